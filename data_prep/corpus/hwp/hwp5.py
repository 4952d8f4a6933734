"""HWP 5.0 (.hwp) text: an OLE compound file whose BodyText/Section<N> streams hold a flat list of
records, usually raw-deflate compressed; the text is in HWPTAG_PARA_TEXT records, UTF-16LE with
control characters mixed in.

본 제품은 한글과컴퓨터의 한/글 문서 파일(.hwp) 공개 문서를 참고하여 개발하였습니다.
(Written from Hancom's published "HWP Document File Formats 5.0"; its terms ask for the notice above
in the source of anything built from it.)

What comes out: every paragraph of every section in stream order, one line each, empty ones
dropped. Tables, text boxes, headers/footers, footnotes/endnotes and hidden comments are paragraph
lists nested in the same stream right after the paragraph that anchors them, so their text is
included, after that paragraph's own line: footnotes in government documents carry the law
references. Master pages (바탕쪽: page decorations, repeated on every page) live in the section
definition control and are left out, as HWPX keeps them outside the section files. Auto numbers
(footnote, page and caption numbers) are not text in the file and do not appear.
"""

from __future__ import annotations

import io
import re
import struct
import sys
import zlib
from array import array

import olefile

from data_prep.corpus import records as R
from data_prep.corpus.hwp.errors import DocumentError

SIGNATURE = b"HWP Document File"
# FileHeader property bits (spec table 3)
COMPRESSED, PASSWORD, DISTRIBUTION, DRM, CERT_ENCRYPTED, CERT_DRM = 1 << 0, 1 << 1, 1 << 2, 1 << 4, 1 << 8, 1 << 10
HWPTAG_PARA_TEXT, HWPTAG_CTRL_HEADER = 0x10 + 51, 0x10 + 55
# CTRL_HEADER data starts with the control id, MAKE_4CHID('s','e','c','d') stored little-endian.
SECTION_DEF_ID = b"secd"[::-1]
# A record header's 12-bit size field holds this when the real size follows in the next 4 bytes.
EXTENDED_SIZE = 0xFFF
# Inline and extended controls (spec table 6) take 8 code units: the code, 6 units of data (a control
# id, a pointer) that must not be read as text, then the code again. The others take one unit.
WIDE_CONTROLS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23})
# What a control becomes in the text: 9 tab, 10 line break, 13 paragraph end, 24 hyphen,
# 30 non-breaking space, 31 fixed-width space; every other control says nothing.
CONTROL_TEXT = {9: "\t", 10: "\n", 13: "\n", 24: "-", 30: " ", 31: " "}
_CONTROL = re.compile("[\x00-\x1f]")
_SECTION = re.compile(r"Section(\d+)")
MAX_SECTION_BYTES = 256 << 20  # inflated; a larger section is refused rather than risk a deflate bomb


def extract_text(data: bytes) -> str:
    """The document's text from the bytes of an .hwp file; DocumentError says why there is none."""
    if not olefile.isOleFile(data=data):
        raise DocumentError(R.CORRUPT_DOCUMENT, "not an OLE compound file (HWP 5)")
    try:
        ole = olefile.OleFileIO(io.BytesIO(data))
    except MemoryError:
        raise
    except Exception as e:  # olefile's format errors are OSErrors, but a damaged header can raise anything
        raise DocumentError(R.CORRUPT_DOCUMENT, f"bad OLE compound file: {type(e).__name__}: {str(e)[:200]}") from e
    with ole:
        if not ole.exists("FileHeader"):
            raise DocumentError(R.CORRUPT_DOCUMENT, "no FileHeader stream: not an HWP document")
        flags = check_file_header(_stream(ole, "FileHeader"))
        lines: list[str] = []
        for name in section_streams(ole):
            raw = _stream(ole, name)
            lines += paragraphs(inflate(raw, name) if flags & COMPRESSED else raw, name)
    return "\n".join(lines)


def check_file_header(header: bytes) -> int:
    """The property flags, once the header says the body is HWP 5 and readable."""
    if len(header) < 40 or not header.startswith(SIGNATURE):
        raise DocumentError(R.CORRUPT_DOCUMENT, "FileHeader: no 'HWP Document File' signature")
    version, flags = struct.unpack_from("<II", header, 32)
    if version >> 24 != 5:
        shown = ".".join(str(version >> s & 0xFF) for s in (24, 16, 8, 0))
        raise DocumentError(R.UNSUPPORTED_DOCUMENT, f"FileHeader: format version {shown}, only 5.x is read")
    if flags & (PASSWORD | CERT_ENCRYPTED):
        raise DocumentError(R.ENCRYPTED_DOCUMENT, f"FileHeader: saved with a password (properties {flags:#x})")
    if flags & (DRM | CERT_DRM):
        raise DocumentError(R.ENCRYPTED_DOCUMENT, f"FileHeader: DRM-protected document (properties {flags:#x})")
    if flags & DISTRIBUTION:
        raise DocumentError(R.UNSUPPORTED_DOCUMENT,
                            f"FileHeader: distribution document (배포용): its text is in encrypted ViewText "
                            f"streams (properties {flags:#x})")
    return flags


def section_streams(ole: olefile.OleFileIO) -> list[str]:
    """BodyText/Section0, Section1, ... in section order (Section10 after Section9)."""
    found = []
    for path in ole.listdir(streams=True, storages=False):
        if len(path) == 2 and path[0] == "BodyText" and (m := _SECTION.fullmatch(path[1])):
            found.append((int(m[1]), "/".join(path)))
    if not found:
        raise DocumentError(R.CORRUPT_DOCUMENT, "no BodyText/Section streams")
    return [name for _, name in sorted(found)]


def _stream(ole: olefile.OleFileIO, name: str) -> bytes:
    try:
        return ole.openstream(name).read()
    except OSError as e:
        raise DocumentError(R.CORRUPT_DOCUMENT, f"{name}: unreadable stream: {e}") from e


def inflate(raw: bytes, name: str) -> bytes:
    d = zlib.decompressobj(-15)  # raw deflate: no zlib header, no checksum
    try:
        out = d.decompress(raw, MAX_SECTION_BYTES)
    except zlib.error as e:
        raise DocumentError(R.CORRUPT_DOCUMENT, f"{name}: bad compressed data: {e}") from e
    if d.unconsumed_tail:
        raise DocumentError(R.UNSUPPORTED_DOCUMENT, f"{name}: inflates to more than {MAX_SECTION_BYTES} bytes")
    if not d.eof:
        raise DocumentError(R.CORRUPT_DOCUMENT, f"{name}: compressed data is truncated")
    return out


def paragraphs(data: bytes, name: str) -> list[str]:
    """The non-empty paragraph texts of one section stream, in order, master pages left out."""
    lines, pos, end = [], 0, len(data)
    skip_below = -1  # inside a section definition (level > this): its paragraph lists are master pages
    while pos < end:
        start = pos
        if end - pos < 4:
            raise DocumentError(R.CORRUPT_DOCUMENT, f"{name}: truncated record header at byte {start}")
        (head,) = struct.unpack_from("<I", data, pos)
        tag, level, size = head & 0x3FF, head >> 10 & 0x3FF, head >> 20
        pos += 4
        if size == EXTENDED_SIZE:
            if end - pos < 4:
                raise DocumentError(R.CORRUPT_DOCUMENT, f"{name}: truncated record header at byte {start}")
            (size,) = struct.unpack_from("<I", data, pos)
            pos += 4
        if size > end - pos:
            raise DocumentError(R.CORRUPT_DOCUMENT, f"{name}: record (tag {tag}) at byte {start} declares "
                                                    f"{size} bytes, {end - pos} left in the stream")
        if skip_below >= 0 and level <= skip_below:
            skip_below = -1
        if tag == HWPTAG_CTRL_HEADER and data[pos:pos + 4] == SECTION_DEF_ID:
            skip_below = level
        elif tag == HWPTAG_PARA_TEXT and skip_below < 0:
            text = para_text(data[pos:pos + size])
            if text.strip():
                lines.append(text)
        pos += size
    return lines


def para_text(payload: bytes) -> str:
    """A PARA_TEXT record's text with the controls replaced by what they mean (or nothing)."""
    units = array("H")
    units.frombytes(payload[: len(payload) & ~1])
    if sys.byteorder == "big":
        units.byteswap()
    # one str character per code unit, so control data (6 units of ids and pointers) can be skipped
    # by position; surrogate pairs are joined back at the end
    s = "".join(map(chr, units))
    out, i, n = [], 0, len(s)
    while i < n:
        m = _CONTROL.search(s, i)
        if m is None:
            out.append(s[i:])
            break
        j = m.start()
        out.append(s[i:j])
        code = ord(s[j])
        out.append(CONTROL_TEXT.get(code, ""))
        i = j + (8 if code in WIDE_CONTROLS else 1)
    text = "".join(out).rstrip("\n")  # the paragraph end (and a line break right before it)
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
