"""HWPX (OWPML, KS X 6101) text: a zip whose Contents/section<N>.xml files hold the paragraphs
(hp:p > hp:run > hp:t); tables, text boxes, headers/footers and footnotes/endnotes nest their own
hp:p lists inside a run.

Same output as the HWP 5 reader: every paragraph in document order, one line each, a paragraph's
own text before the paragraphs nested in it (table cells, footnotes), empty ones dropped. Elements
are matched by local name, so the 2011 (hancom.co.kr) and 2024 (owpml.org) namespaces both read.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from xml.etree import ElementTree as ET

from data_prep.corpus import records as R
from data_prep.corpus.hwp.errors import DocumentError

MIMETYPE = b"application/hwp+zip"
_SECTION = re.compile(r"Contents/section(\d+)\.xml", re.IGNORECASE)
# What an element inside hp:t becomes; the others (markpen, titleMark, change tracking) say nothing.
INLINE_TEXT = {"tab": "\t", "lineBreak": "\n", "hyphen": "-", "nbSpace": " ", "fwSpace": " "}
MAX_XML_BYTES = 256 << 20  # uncompressed per section; a larger one is refused rather than risk a zip bomb
# Errors reading a member of a damaged zip.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)


def extract_text(data: bytes) -> str:
    """The document's text from the bytes of an .hwpx file; DocumentError says why there is none."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DocumentError(R.CORRUPT_DOCUMENT, f"not a readable zip archive: {e}") from e
    with zf:
        sections = section_members(zf)
        lines: list[str] = []
        for name in sections:
            lines += paragraphs(_parse(zf, name))
    return "\n".join(lines)


def section_members(zf: zipfile.ZipFile) -> list[str]:
    names = zf.namelist()
    if "mimetype" in names:
        mime = _read(zf, "mimetype").strip()
        if mime != MIMETYPE:
            raise DocumentError(R.UNSUPPORTED_DOCUMENT, f"zip with mimetype {mime[:60]!r}, not {MIMETYPE.decode()}")
    manifest = next((n for n in names if n.lower() == "meta-inf/manifest.xml"), None)
    if manifest and b"encryption-data" in _read(zf, manifest):
        raise DocumentError(R.ENCRYPTED_DOCUMENT, f"{manifest} lists encrypted parts: saved with a password")
    found = sorted((int(m[1]), n) for n in names if (m := _SECTION.fullmatch(n)))
    if not found:
        raise DocumentError(R.CORRUPT_DOCUMENT, "no Contents/sectionN.xml in the zip")
    return [n for _, n in found]


def _read(zf: zipfile.ZipFile, name: str) -> bytes:
    info = zf.getinfo(name)
    if info.flag_bits & 0x1:
        raise DocumentError(R.ENCRYPTED_DOCUMENT, f"{name}: zip member is encrypted")
    if info.file_size > MAX_XML_BYTES:
        raise DocumentError(R.UNSUPPORTED_DOCUMENT, f"{name}: {info.file_size} bytes uncompressed, "
                                                    f"more than {MAX_XML_BYTES}")
    try:
        return zf.read(name)
    except _ZIP_ERRORS as e:
        raise DocumentError(R.CORRUPT_DOCUMENT, f"{name}: unreadable zip member: {e}") from e


def _parse(zf: zipfile.ZipFile, name: str) -> ET.Element:
    try:  # expat >= 2.4 refuses entity-expansion bombs; ElementTree never fetches external entities
        return ET.fromstring(_read(zf, name))
    except ET.ParseError as e:
        raise DocumentError(R.CORRUPT_DOCUMENT, f"{name}: bad XML: {e}") from e


def _local(tag) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""  # comments and PIs have no str tag


def paragraphs(root: ET.Element) -> list[str]:
    """Non-empty paragraph texts in document order: each paragraph's own line comes before the
    lines of the paragraphs nested in it."""
    lines: list[str | None] = []

    def paragraph(p: ET.Element) -> None:
        slot = len(lines)
        lines.append(None)  # keeps the host paragraph ahead of its nested ones
        parts: list[str] = []
        walk(p, parts)
        lines[slot] = "".join(parts)

    def walk(el: ET.Element, parts: list[str]) -> None:
        for child in el:
            name = _local(child.tag)
            if name == "p":
                paragraph(child)
            elif name == "t":
                parts.append(child.text or "")
                for inner in child:
                    parts.append(INLINE_TEXT.get(_local(inner.tag), ""))
                    parts.append(inner.tail or "")
            else:
                walk(child, parts)

    try:
        if _local(root.tag) == "p":
            paragraph(root)
        else:
            walk(root, [])
    except RecursionError as e:
        raise DocumentError(R.CORRUPT_DOCUMENT, "elements nested too deeply") from e
    return [line for line in lines if line and line.strip()]
