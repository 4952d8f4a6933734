"""HWP 5 and HWPX files built in code for the reader tests (real HWP samples may not be committed).

- `cfb(streams)`: a Compound File Binary (OLE2, version 3) writer: 512-byte sectors, FAT, directory
  tree, and the mini stream (64-byte sectors, MiniFAT) for streams under 4096 bytes, as real .hwp
  files store their small streams.
- `hwp5(...)`: FileHeader (signature, version, property flags) + DocInfo + BodyText/Section<N> of
  records (PARA_HEADER, PARA_TEXT, CTRL_HEADER, LIST_HEADER, TABLE), raw-deflate compressed or not.
- `hwpx(...)`: the OWPML zip: mimetype (stored, first), version.xml, META-INF, Contents/content.hpf,
  header.xml and section<N>.xml with hp:p / hp:run / hp:t, tables and footnotes.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

# ---------------------------------------------------------------- Compound File Binary writer

SECTOR, MINI_SECTOR, MINI_CUTOFF = 512, 64, 4096
FREESECT, ENDOFCHAIN, FATSECT, NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
_STORAGE, _STREAM, _ROOT = 1, 2, 5


@dataclass
class _Entry:
    name: str
    kind: int
    data: bytes = b""
    children: list["_Entry"] = field(default_factory=list)
    sid: int = 0
    left: int = NOSTREAM
    right: int = NOSTREAM
    child: int = NOSTREAM
    start: int = ENDOFCHAIN


def _cfb_order(e: _Entry) -> tuple[int, str]:
    return len(e.name), e.name.upper()  # the CFB sibling order: shorter names first, then case-blind


def _tree(siblings: list[_Entry]) -> int:
    """A balanced binary tree of siblings (left/right links); returns the root's sid."""
    if not siblings:
        return NOSTREAM
    mid = len(siblings) // 2
    node = siblings[mid]
    node.left, node.right = _tree(siblings[:mid]), _tree(siblings[mid + 1:])
    return node.sid


def _chain(fat: list[int], first: int, count: int) -> None:
    for i in range(first, first + count):
        fat[i] = i + 1 if i < first + count - 1 else ENDOFCHAIN


def cfb(streams: dict[str, bytes]) -> bytes:
    """An OLE compound file holding `streams` ("Storage/Stream" paths, one storage level deep)."""
    root = _Entry("Root Entry", _ROOT)
    storages: dict[str, _Entry] = {}
    for path, data in streams.items():
        parent = root
        *dirs, name = path.split("/")
        for d in dirs:
            if d not in storages:
                storages[d] = _Entry(d, _STORAGE)
                root.children.append(storages[d])
            parent = storages[d]
        parent.children.append(_Entry(name, _STREAM, data))
    entries: list[_Entry] = []

    def number(e: _Entry) -> None:
        e.sid = len(entries)
        entries.append(e)
        e.children.sort(key=_cfb_order)
        for c in e.children:
            number(c)
    number(root)
    for e in entries:
        e.child = _tree(e.children)

    # small streams go to the mini stream, 64-byte mini sectors chained in the MiniFAT
    mini, minifat = bytearray(), []
    big = [e for e in entries if e.kind == _STREAM and len(e.data) >= MINI_CUTOFF]
    for e in entries:
        if e.kind == _STREAM and 0 < len(e.data) < MINI_CUTOFF:
            n = -(-len(e.data) // MINI_SECTOR)
            e.start = len(minifat)
            minifat += [e.start + i + 1 for i in range(n - 1)] + [ENDOFCHAIN]
            mini += e.data.ljust(n * MINI_SECTOR, b"\0")

    def sectors(nbytes: int) -> int:
        return -(-nbytes // SECTOR)
    parts = [("dir", sectors(len(entries) * 128)), ("minifat", sectors(len(minifat) * 4)),
             ("mini", sectors(len(mini)))] + [(e.sid, sectors(len(e.data))) for e in big]
    used = sum(n for _, n in parts)
    n_fat = 1
    while n_fat * (SECTOR // 4) < used + n_fat:
        n_fat += 1
    assert n_fat <= 109, "no DIFAT sectors in this writer: keep test files under ~7 MB"
    fat = [FREESECT] * (n_fat * (SECTOR // 4))
    fat[:n_fat] = [FATSECT] * n_fat
    start, next_free = {}, n_fat
    for key, n in parts:
        start[key] = next_free if n else ENDOFCHAIN
        _chain(fat, next_free, n)
        next_free += n
    for e in big:
        e.start = start[e.sid]
    root.start, root.data = start["mini"], bytes(mini)

    body = bytearray()
    body += struct.pack(f"<{len(fat)}I", *fat)
    directory = bytearray()
    for e in entries:
        name = e.name.encode("utf-16-le") + b"\0\0"
        size = len(e.data) if e.kind != _STORAGE else 0
        directory += struct.pack("<64sHBBIII16sIQQIQ", name, len(name), e.kind, 1, e.left, e.right, e.child,
                                 b"\0" * 16, 0, 0, 0, 0 if e.kind == _STORAGE else e.start, size)
    while len(directory) % SECTOR:  # unused entries: empty, no siblings, no child
        directory += struct.pack("<64sHBBIII16sIQQIQ", b"", 0, 0, 0, NOSTREAM, NOSTREAM, NOSTREAM,
                                 b"\0" * 16, 0, 0, 0, 0, 0)
    body += directory
    body += struct.pack(f"<{len(minifat)}I", *minifat).ljust(sectors(len(minifat) * 4) * SECTOR, b"\xff")
    body += bytes(mini).ljust(sectors(len(mini)) * SECTOR, b"\0")
    for e in big:
        body += e.data.ljust(sectors(len(e.data)) * SECTOR, b"\0")

    difat = list(range(n_fat)) + [FREESECT] * (109 - n_fat)
    header = struct.pack("<8s16sHHHHH6sIIIIIIIII", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"\0" * 16,
                         0x3E, 3, 0xFFFE, 9, 6, b"\0" * 6, 0, n_fat, start["dir"], 0, MINI_CUTOFF,
                         start["minifat"], sectors(len(minifat) * 4), ENDOFCHAIN, 0)
    header += struct.pack("<109I", *difat)
    assert len(header) == SECTOR
    return header + bytes(body)


# ---------------------------------------------------------------- HWP 5 records

PARA_HEADER, PARA_TEXT, PARA_CHAR_SHAPE, CTRL_HEADER, LIST_HEADER, TABLE = 66, 67, 68, 71, 72, 77
DOCUMENT_PROPERTIES = 0x10
COMPRESSED, PASSWORD, DISTRIBUTION = 1, 2, 4
PARA_END = "\r"  # control 13 ends every paragraph's text


def record(tag: int, level: int, payload: bytes) -> bytes:
    """Record header: tag 10 bits, level 10 bits, size 12 bits; size 0xFFF means a 32-bit size follows."""
    if len(payload) >= 0xFFF:
        return struct.pack("<II", tag | level << 10 | 0xFFF << 20, len(payload)) + payload
    return struct.pack("<I", tag | level << 10 | len(payload) << 20) + payload


def ctrl(code: int, ctrl_id: bytes = b"    ") -> str:
    """An inline/extended control: 8 code units (code, 4-byte control id, 4 more units, code)."""
    data = ctrl_id[::-1].ljust(12, b"\0")  # ids are stored as a little-endian MAKE_4CHID
    return chr(code) + data.decode("utf-16-le", "surrogatepass") + chr(code)


TABLE_CTRL = ctrl(11, b"tbl ")
FOOTNOTE_CTRL = ctrl(17, b"fn  ")
TAB = ctrl(9, b"\0\0\0\0")
FIELD_START, FIELD_END = ctrl(3, b"%clk"), ctrl(4, b"%clk")
LINE_BREAK, HYPHEN, NBSPACE = "\n", chr(24), chr(30)


def paragraph(text: str, level: int = 0) -> bytes:
    """PARA_HEADER + PARA_TEXT (+ a char-shape record, as real files have). `text` may hold controls;
    the paragraph end is added. Text beyond the BMP is written as surrogate pairs, as HWP does."""
    units = (text + PARA_END).encode("utf-16-le", "surrogatepass")
    head = struct.pack("<IIHBBHHHIH", len(units) // 2, 0, 0, 0, 0, 1, 0, 1, 0, 0)
    out = record(PARA_HEADER, level, head)
    if text:
        out += record(PARA_TEXT, level + 1, units)
    return out + record(PARA_CHAR_SHAPE, level + 1, struct.pack("<II", 0, 0))


def control(ctrl_id: bytes, lists: list[list[str]], level: int = 1, table: bool = False) -> bytes:
    """A CTRL_HEADER with paragraph lists below it (table cells, a footnote's paragraphs)."""
    out = record(CTRL_HEADER, level, ctrl_id[::-1] + b"\0" * 8)
    if table:
        out += record(TABLE, level + 1, struct.pack("<IHH", 0, 1, len(lists)))
    for paras in lists:
        out += record(LIST_HEADER, level + 1, struct.pack("<hI", len(paras), 0))
        out += b"".join(paragraph(p, level + 1) for p in paras)
    return out


def file_header(flags: int = COMPRESSED, version: int = 0x05000300) -> bytes:
    return b"HWP Document File".ljust(32, b"\0") + struct.pack("<II", version, flags) + b"\0" * 216


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate, as HWP stores its streams
    return c.compress(data) + c.flush()


def hwp5(sections: list[bytes], flags: int = COMPRESSED, version: int = 0x05000300,
         raw_sections: dict[int, bytes] | None = None) -> bytes:
    """An .hwp file whose BodyText/Section<i> streams hold `sections` (record bytes), compressed when
    the flags say so; `raw_sections` replaces a section's stored bytes as is (to damage it)."""
    pack = deflate if flags & COMPRESSED else (lambda b: b)
    streams = {"FileHeader": file_header(flags, version),
               "DocInfo": pack(record(DOCUMENT_PROPERTIES, 0, struct.pack("<H7I", len(sections), *[1] * 7)))}
    for i, sec in enumerate(sections):
        streams[f"BodyText/Section{i}"] = (raw_sections or {}).get(i, pack(sec))
    streams["PrvText"] = "미리보기".encode("utf-16-le")
    return cfb(streams)


# ---------------------------------------------------------------- HWPX

HP = "http://www.hancom.co.kr/hwpml/2011/paragraph"
HS = "http://www.hancom.co.kr/hwpml/2011/section"


def t(text: str) -> str:
    return f"<hp:t>{escape(text)}</hp:t>"


def run(*content: str) -> str:
    return f'<hp:run charPrIDRef="0">{"".join(content)}</hp:run>'


def p(*runs: str) -> str:
    return f'<hp:p id="0" paraPrIDRef="0" styleIDRef="0">{"".join(runs)}</hp:p>'


def sub_list(*paras: str) -> str:
    return f'<hp:subList id="" textDirection="HORIZONTAL">{"".join(paras)}</hp:subList>'


def table(rows: list[list[str]]) -> str:
    trs = "".join("<hp:tr>" + "".join(f'<hp:tc><hp:cellAddr colAddr="{c}" rowAddr="{r}"/>{sub_list(p(run(t(cell))))}'
                                       f"</hp:tc>" for c, cell in enumerate(row)) + "</hp:tr>"
                  for r, row in enumerate(rows))
    return f'<hp:tbl rowCnt="{len(rows)}" colCnt="{len(rows[0])}">{trs}</hp:tbl>'


def footnote(*paras: str) -> str:
    return f'<hp:ctrl><hp:footNote number="1">{sub_list(*paras)}</hp:footNote></hp:ctrl>'


def section_xml(*paras: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>'
            f'<hs:sec xmlns:hs="{HS}" xmlns:hp="{HP}">{"".join(paras)}</hs:sec>')


def hwpx(sections: list[str], mimetype: bytes = b"application/hwp+zip", manifest: str | None = None,
         extra: dict[str, bytes] | None = None) -> bytes:
    """An .hwpx zip with Contents/section<i>.xml = sections[i] (XML text as given, even if broken)."""
    items = "".join(f'<opf:item id="section{i}" href="Contents/section{i}.xml" media-type="application/xml"/>'
                    for i in range(len(sections)))
    spine = "".join(f'<opf:itemref idref="section{i}" linear="yes"/>' for i in range(len(sections)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), mimetype)  # first and stored, as OCF requires
        z.writestr("version.xml", '<?xml version="1.0" encoding="UTF-8"?><hv:HCFVersion '
                   'xmlns:hv="http://www.hancom.co.kr/hwpml/2011/version" major="5" minor="1" micro="0"/>')
        z.writestr("META-INF/container.xml",
                   '<ocf:container xmlns:ocf="urn:oasis:names:tc:opendocument:xmlns:container"><ocf:rootfiles>'
                   '<ocf:rootfile full-path="Contents/content.hpf" media-type="application/hwpml-package+xml"/>'
                   '</ocf:rootfiles></ocf:container>')
        z.writestr("META-INF/manifest.xml", manifest or
                   '<odf:manifest xmlns:odf="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"/>')
        z.writestr("Contents/content.hpf", f'<opf:package xmlns:opf="http://www.idpf.org/2007/opf/">'
                   f'<opf:manifest>{items}</opf:manifest><opf:spine>{spine}</opf:spine></opf:package>')
        z.writestr("Contents/header.xml", '<hh:head xmlns:hh="http://www.hancom.co.kr/hwpml/2011/head"/>')
        for i, xml in enumerate(sections):
            z.writestr(f"Contents/section{i}.xml", xml, compress_type=zipfile.ZIP_DEFLATED)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


ENCRYPTED_MANIFEST = (
    '<odf:manifest xmlns:odf="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
    '<odf:file-entry odf:full-path="Contents/section0.xml" odf:media-type="application/xml" odf:size="100">'
    '<odf:encryption-data odf:checksum-type="sha256-1k" odf:checksum="AAAA">'
    '<odf:algorithm odf:algorithm-name="aes256-cbc" odf:initialisation-vector="AAAA"/>'
    '</odf:encryption-data></odf:file-entry></odf:manifest>')
