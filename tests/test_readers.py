"""The corpus readers on real datatrove: csv/tsv rows with their physical line numbers, HWPX and HWP 5
documents built in code (tables, footnotes, controls, mini streams, damaged and encrypted files),
and the provenance every record carries, kept or rejected."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import olefile
import pytest

from data_prep.corpus import records as R
from data_prep.corpus.hwp import hwp5 as hwp5_mod
from data_prep.corpus.pii import PIISettings
from data_prep.corpus.pipeline import CorpusSettings, prepare_corpus
from data_prep.corpus.quality import QualitySettings
from data_prep.corpus.readers import FORMATS, CorpusReader, InputFile, describe_inputs, input_format
from tests import hwp_fixtures as F

REPO = Path(__file__).resolve().parent.parent
CHATBOT = REPO / "examples" / "data" / "ko-chatbot" / "ChatbotData.csv"
KO_LAW = REPO / "examples" / "data" / "ko-gov-sample" / "kolaw_constitution.txt"

ART1 = "제1조 ① 대한민국은 민주공화국이다."
ART2 = "② 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다."
NOTE = "「정부조직법」 제3조 제2항에 따른다."


def read(tmp_path: Path, *files: tuple[str, bytes], **keys) -> list:
    """Write the files and read them with one CorpusReader, as the split pass does (one task)."""
    inputs = []
    for name, data in files:
        path = tmp_path / name
        path.write_bytes(data)
        inputs.append(path)
    return list(CorpusReader(describe_inputs(inputs, "test-src", "KOGL-1", **keys)).run())


def one(tmp_path: Path, name: str, data: bytes):
    docs = read(tmp_path, (name, data))
    assert len(docs) == 1
    return docs[0]


# ---------------------------------------------------------------- csv / tsv

def test_formats_and_suffixes():
    for name, fmt in [("a.csv", "csv"), ("a.CSV.gz", "csv"), ("a.tsv", "tsv"), ("a.tsv.gz", "tsv"),
                      ("공문.hwp", "hwp"), ("공문.HWPX", "hwp"), ("a.jsonl.gz", "jsonl"), ("a.docx", None)]:
        assert input_format(name) == fmt, name
    assert ".hwpx" in FORMATS and ".csv" in FORMATS


def test_csv_rows_keep_physical_line_numbers_and_reject_bad_rows(tmp_path):
    data = (
        "\ufeffid,text,agency\n"                                        # 1 header (with a BOM)
        "a1,\"제1조 이 법은\n공무원의 육아휴직에 관하여\n규정한다.\",행안부\n"  # 2-4 one row, quoted newlines
        "a2,\"쉼표, 그리고 \"\"따옴표\"\"\",국회\n"                       # 5 kept
        "a3,필드가,너무,많다\n"                                          # 6 bad_csv: 4 fields
        "\n"                                                            # 7 blank_line
        "a4,\"닫힌 따옴표 뒤\"쓰레기,법제처\n"                             # 8 bad_csv: bad quoting
        ",아이디 없는 행,행안부\n"                                        # 9 kept, default id
    ).encode("utf-8") + b"a5,\xff\xfe \xea\xb0,x\n" + (                 # 10 invalid_utf8
        "a6,마지막 행,행안부\n"                                          # 11 kept
        "a7,\"끝나지 않는 따옴표\n"                                       # 12-13 bad_csv at EOF, at its start
        "계속되는 줄\n").encode("utf-8")
    docs = read(tmp_path, ("rows.csv", data))
    by_line = {d.metadata[R.LINE]: d for d in docs}
    assert sorted(by_line) == [2, 5, 6, 7, 8, 9, 10, 11, 12]
    first = by_line[2]
    assert first.id == "a1" and first.text == "제1조 이 법은\n공무원의 육아휴직에 관하여\n규정한다."
    assert first.metadata[R.EXTRA] == {"agency": "행안부"} and not R.is_rejected(first)
    assert by_line[5].text == '쉼표, 그리고 "따옴표"'
    assert by_line[6].metadata[R.REASON] == R.BAD_CSV and "4 fields, the header has 3" in by_line[6].metadata[R.DETAIL]
    assert by_line[6].text == "a3,필드가,너무,많다"  # the raw row, for whoever reads rejected/
    assert by_line[7].metadata[R.REASON] == R.BLANK_LINE
    assert by_line[8].metadata[R.REASON] == R.BAD_CSV
    assert by_line[9].id == "test-src/rows.csv:9" and by_line[9].text == "아이디 없는 행"
    bad = by_line[10]
    assert bad.metadata[R.REASON] == R.INVALID_UTF8
    assert base64.b64decode(bad.metadata[R.RAW_BASE64]) == b"a5,\xff\xfe \xea\xb0,x"
    assert by_line[11].id == "a6" and not R.is_rejected(by_line[11])
    tail = by_line[12]
    assert tail.metadata[R.REASON] == R.BAD_CSV and "계속되는 줄" in tail.text
    assert [R.is_rejected(d) for d in docs].count(False) == 4


def test_csv_header_edge_cases(tmp_path):
    docs = read(tmp_path, ("dup.csv", "text,note,note\n본문입니다,하나,둘\n".encode()))
    assert docs[0].metadata[R.EXTRA] == {"note": "하나", "note.1": "둘"}  # repeated column kept, renamed
    docs = read(tmp_path, ("nokey.csv", "질문,답변\n안녕,반가워\n".encode()))
    assert docs[0].metadata[R.REASON] == R.MISSING_TEXT_KEY and docs[0].metadata[R.LINE] == 2
    assert read(tmp_path, ("header-only.csv", b"id,text\n")) == []
    assert read(tmp_path, ("empty.csv", b"")) == []
    docs = read(tmp_path, ("badhead.csv", b'"id"x,text\na,b\n'))
    assert len(docs) == 1 and docs[0].metadata[R.REASON] == R.BAD_CSV
    assert docs[0].metadata[R.DETAIL].startswith("header row:")


def test_csv_gz_tsv_and_a_truncated_gzip(tmp_path):
    gz = gzip.compress("id,text\ng1,\"압축된\n행\"\ng2,둘째\n".encode())
    docs = read(tmp_path, ("a.csv.gz", gz), ("b.tsv", "id\ttext\tk\nt1\t탭, 쉼표\tv\n".encode()))
    assert [(d.id, d.text, d.metadata[R.LINE]) for d in docs] == [
        ("g1", "압축된\n행", 2), ("g2", "둘째", 4), ("t1", "탭, 쉼표", 2)]
    big = gzip.compress("".join(f"r{i},행정안전부 공고 제{i}호\n" for i in range(5000)).encode())
    docs = read(tmp_path, ("t.csv.gz", gzip.compress(b"id,text\n") + big[: len(big) // 2]))  # cut mid-member
    assert docs[-1].metadata[R.REASON] == R.UNREADABLE_FILE and len(docs) > 1


def test_the_real_chatbot_csv(tmp_path):
    docs = list(CorpusReader(describe_inputs([CHATBOT], "ko-chatbot", "MIT", text_key="A", id_key="id")).run())
    assert len(docs) == 11823 and not any(R.is_rejected(d) for d in docs)
    assert docs[0].text == "하루가 또 가네요." and docs[0].metadata[R.EXTRA] == {"Q": "12시 땡!", "label": "0"}
    assert docs[0].id == "ko-chatbot/ChatbotData.csv:2" and docs[-1].metadata[R.LINE] == 11824


# ---------------------------------------------------------------- encodings (cp949 government exports)

# 똠/햏 are outside EUC-KR's 2,350 syllables: cp949 only
CP949_CSV = ("id,text,agency\n"
             "c1,\"제1조 이 법은\n공무원의 육아휴직에 관하여 규정한다.\",행정안전부\n"  # 2-3, quoted newline
             "c2,\"똠방각하, 그리고 \"\"햏\"\"\",국회\n").encode("cp949")          # 4


def test_cp949_csv_decodes_with_its_encoding(tmp_path):
    docs = read(tmp_path, ("gov.csv", CP949_CSV), encoding="cp949")
    assert [(d.id, d.text, d.metadata[R.LINE]) for d in docs] == [
        ("c1", "제1조 이 법은\n공무원의 육아휴직에 관하여 규정한다.", 2), ("c2", '똠방각하, 그리고 "햏"', 4)]
    assert docs[0].metadata[R.EXTRA] == {"agency": "행정안전부"} and not any(R.is_rejected(d) for d in docs)
    # a Korean header, tsv.gz, and an alias of cp949
    tsv = gzip.compress("번호\t본문\n1\t민원 처리 결과를 알려드립니다.\n".encode("cp949"))
    docs = read(tmp_path, ("민원.tsv.gz", tsv), encoding="ks_c_5601-1987", text_key="본문", id_key="번호")
    assert [(d.id, d.text) for d in docs] == [("1", "민원 처리 결과를 알려드립니다.")]


def test_cp949_csv_read_as_utf8_is_invalid_utf8_with_raw_bytes(tmp_path):
    docs = read(tmp_path, ("gov.csv", CP949_CSV))
    assert [d.metadata[R.REASON] for d in docs] == [R.INVALID_UTF8, R.INVALID_UTF8]
    rows = CP949_CSV.split(b"\n")
    assert [base64.b64decode(d.metadata[R.RAW_BASE64]) for d in docs] == [b"\n".join(rows[1:3]), rows[3]]
    assert [d.metadata[R.LINE] for d in docs] == [2, 4] and "cp949" not in docs[0].metadata[R.DETAIL]
    bad_header = read(tmp_path, ("kohead.csv", "번호,본문\n1,가\n".encode("cp949")))
    assert [d.metadata[R.REASON] for d in bad_header] == [R.BAD_CSV]
    assert bad_header[0].metadata[R.DETAIL].startswith("header row: not UTF-8")


def test_cp949_txt_and_jsonl(tmp_path):
    law = "제1조 ① 대한민국은 민주공화국이다.\r\n똠방각하\n"
    lines = [{"id": "j1", "text": "행정안전부 공고 제2024-1호"}, {"id": "j2", "text": "햏"}]
    jsonl = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in lines).encode("cp949")
    docs = read(tmp_path, ("law.txt", law.encode("cp949")), ("a.jsonl", jsonl), ("b.jsonl.gz", gzip.compress(jsonl)),
                encoding="cp949")
    assert [(d.id, d.text) for d in docs] == [("test-src/law.txt", law)] + [(o["id"], o["text"]) for o in lines] * 2
    assert not any(R.is_rejected(d) for d in docs)


def test_bytes_invalid_in_cp949_are_invalid_encoding_with_raw_bytes(tmp_path):
    csv_data = "id,text\nr1,정상 행\n".encode("cp949") + b"r2,\xff\xfe \x80 bad\n" + "r3,끝\n".encode("cp949")
    docs = read(tmp_path, ("rows.csv", csv_data), ("bad.txt", "앞".encode("cp949") + b"\x80"),
                ("bad.jsonl", b'{"text": "\xc9"}\n'), encoding="cp949")
    assert [d.metadata.get(R.REASON) for d in docs] == [None, R.INVALID_ENCODING, None, R.INVALID_ENCODING,
                                                       R.INVALID_ENCODING]
    row, txt, jl = docs[1], docs[3], docs[4]
    assert base64.b64decode(row.metadata[R.RAW_BASE64]) == b"r2,\xff\xfe \x80 bad" and row.metadata[R.LINE] == 3
    assert row.metadata[R.DETAIL] == "not cp949: illegal multibyte sequence at byte 3"
    assert base64.b64decode(txt.metadata[R.RAW_BASE64]) == "앞".encode("cp949") + b"\x80"
    assert base64.b64decode(jl.metadata[R.RAW_BASE64]) == b'{"text": "\xc9"}'
    assert all(d.metadata[R.DETAIL].startswith("not cp949: ") for d in (txt, jl))


def test_utf8_bom_is_stripped_only_for_utf8(tmp_path):
    data = b"\xef\xbb\xbfid,text\n1,\xea\xb0\x80\n"  # utf-8 with a BOM
    for enc in ("utf-8", "UTF8", "utf-8-sig"):
        docs = read(tmp_path, ("bom.csv", data), encoding=enc)
        assert [(d.id, d.text) for d in docs] == [("1", "가")], enc


@pytest.mark.parametrize("encoding, message", [
    ("cp94", "unknown encoding 'cp94'"), ("utf-16", "not ASCII-compatible"), ("base64", "not a text encoding")])
def test_unusable_encoding_fails_before_reading(tmp_path, encoding, message):
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'a.csv'} (source 'gov'): ") + f".*{message}"):
        InputFile(str(tmp_path / "a.csv"), "gov", encoding=encoding)
    with pytest.raises(ValueError, match=f"source 'gov': .*{message}"):
        describe_inputs([tmp_path / "missing.csv"], "gov", encoding=encoding)  # before hashing the file


# ---------------------------------------------------------------- HWPX

def test_hwpx_paragraphs_tables_footnotes_in_document_order(tmp_path):
    sec0 = F.section_xml(
        F.p(F.run(F.t(ART1))),
        F.p(F.run(F.t("인사혁신처장은"), F.footnote(F.p(F.run(F.t(NOTE))))), F.run(F.t(" 다음을 정한다."))),
        F.p(F.run(F.table([["구분", "금액"], ["예산", "1,234,567원"]]))),
        F.p(F.run('<hp:t>줄<hp:lineBreak/>바꿈<hp:tab width="4000" leader="0" type="1"/>탭'
                  '<hp:markpenBegin color="#FFFF00"/>형광펜<hp:markpenEnd/></hp:t>')),
        F.p(F.run(F.t("   "))),  # blank paragraph: dropped
    )
    sec1 = F.section_xml(F.p(F.run(F.t(ART2))))
    doc = one(tmp_path, "법령.hwpx", F.hwpx([sec0, sec1]))
    assert not R.is_rejected(doc) and doc.id == "test-src/법령.hwpx" and doc.metadata[R.LINE] == 1
    assert doc.text.split("\n") == [
        ART1, "인사혁신처장은 다음을 정한다.", NOTE, "구분", "금액", "예산", "1,234,567원",
        "줄", "바꿈\t탭형광펜", ART2]


def test_hwpx_sections_in_numeric_order_and_2024_namespace(tmp_path):
    sections = [F.section_xml(F.p(F.run(F.t(f"{i}구역")))) for i in range(12)]
    sections[11] = sections[11].replace("http://www.hancom.co.kr/hwpml/2011/", "http://www.owpml.org/owpml/2024/")
    doc = one(tmp_path, "many.hwpx", F.hwpx(sections))
    assert doc.text.split("\n") == [f"{i}구역" for i in range(12)]  # section10 after section9, not section1


@pytest.mark.parametrize("name, data, reason, detail", [
    ("notzip.hwpx", b"PK\x03\x04 this is not really a zip", R.CORRUPT_DOCUMENT, "zip"),
    ("text.hwpx", "그냥 텍스트".encode(), R.CORRUPT_DOCUMENT, "neither"),
    ("badxml.hwpx", F.hwpx([F.section_xml(F.p(F.run(F.t("첫 구역")))), "<hs:sec><hp:p>닫히지 않음"]),
     R.CORRUPT_DOCUMENT, "Contents/section1.xml: bad XML"),
    ("nosection.hwpx", F.hwpx([]), R.CORRUPT_DOCUMENT, "no Contents/sectionN.xml"),
    ("locked.hwpx", F.hwpx([F.section_xml()], manifest=F.ENCRYPTED_MANIFEST), R.ENCRYPTED_DOCUMENT, "encrypted"),
    ("word.hwpx", F.hwpx([F.section_xml()], mimetype=b"application/vnd.oasis.opendocument.text"),
     R.UNSUPPORTED_DOCUMENT, "mimetype"),
])
def test_broken_hwpx_is_one_reject_with_reason(tmp_path, name, data, reason, detail):
    doc = one(tmp_path, name, data)
    assert doc.metadata[R.REASON] == reason and detail in doc.metadata[R.DETAIL]
    assert doc.text == "" and doc.id == f"test-src/{name}" and doc.metadata[R.FILE] == name


def test_truncated_hwpx_member_is_corrupt(tmp_path):
    data = F.hwpx([F.section_xml(F.p(F.run(F.t(ART1 * 200))))])
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.getinfo("Contents/section0.xml")
    cut = bytearray(data)
    body = info.header_offset + 30 + len(info.filename) + 10  # inside the deflated section
    cut[body:body + 40] = b"\0" * 40
    doc = one(tmp_path, "damaged.hwpx", bytes(cut))
    assert doc.metadata[R.REASON] == R.CORRUPT_DOCUMENT and "section0.xml" in doc.metadata[R.DETAIL]


# ---------------------------------------------------------------- HWP 5

def _body() -> bytes:
    """A section definition holding a master page, host paragraphs with a footnote and a 2x2 table,
    then one with inline controls."""
    return b"".join([
        F.paragraph(ART1 + F.ctrl(2, b"secd")),
        F.control(b"secd", [["바탕쪽 머리 문구"]]),  # a master page: left out
        F.paragraph("인사혁신처장은" + F.FOOTNOTE_CTRL + " 다음을 정한다."),
        F.control(b"fn  ", [[NOTE]]),
        F.paragraph(F.TABLE_CTRL),
        F.control(b"tbl ", [["구분"], ["금액"], ["예산"], ["1,234,567원"]], table=True),
        F.paragraph(F.FIELD_START + "누름틀" + F.FIELD_END + F.TAB + "탭" + F.LINE_BREAK + "새 줄"
                    + F.HYPHEN + "하이픈" + F.NBSPACE + "빈칸 𠀀"),
        F.paragraph(""),  # an empty paragraph has no PARA_TEXT record
    ])


EXPECTED = [ART1, "인사혁신처장은 다음을 정한다.", NOTE, "구분", "금액", "예산", "1,234,567원",
            "누름틀\t탭", "새 줄-하이픈 빈칸 𠀀"]


@pytest.mark.parametrize("flags", [F.COMPRESSED, 0], ids=["compressed", "uncompressed"])
def test_hwp5_text_controls_tables_footnotes(tmp_path, flags):
    doc = one(tmp_path, "공문.hwp", F.hwp5([_body(), F.paragraph(ART2)], flags=flags))
    assert not R.is_rejected(doc), doc.metadata.get(R.DETAIL)
    assert doc.text.split("\n") == EXPECTED + [ART2]
    assert not any(ord(c) < 32 and c not in "\t\n" for c in doc.text)  # no control data leaked


def test_hwp5_mini_stream_and_regular_sectors(tmp_path):
    small = F.hwp5([F.paragraph(ART1)], flags=F.COMPRESSED)  # every stream < 4096 bytes: in the mini stream
    long_text = (ART2 + " ") * 120  # > 4095 bytes of UTF-16: the extended 32-bit record size
    assert len(long_text.encode("utf-16-le")) > 0xFFF
    big = F.hwp5([F.paragraph(long_text)], flags=0)  # an uncompressed section >= 4096 bytes: regular sectors
    for data, stored_in_mini_stream in ((small, True), (big, False)):
        with olefile.OleFileIO(io.BytesIO(data), raise_defects=olefile.DEFECT_INCORRECT) as ole:
            assert (ole.get_size("BodyText/Section0") < ole.minisectorcutoff) == stored_in_mini_stream
    docs = read(tmp_path, ("small.hwp", small), ("big.hwp", big))
    assert [d.text for d in docs] == [ART1, long_text]
    assert not any(R.is_rejected(d) for d in docs)


def test_hwp5_sections_in_numeric_order(tmp_path):
    doc = one(tmp_path, "sections.hwp", F.hwp5([F.paragraph(f"{i}구역") for i in range(12)]))
    assert doc.text.split("\n") == [f"{i}구역" for i in range(12)]


def _reject(tmp_path, name: str, data: bytes, reason: str, detail: str):
    doc = one(tmp_path, name, data)
    assert doc.metadata[R.REASON] == reason, doc.metadata.get(R.DETAIL)
    assert detail in doc.metadata[R.DETAIL], doc.metadata[R.DETAIL]
    assert doc.text == "" and doc.id == f"test-src/{name}"
    return doc


def test_hwp5_encrypted_and_unsupported_documents(tmp_path):
    _reject(tmp_path, "password.hwp", F.hwp5([F.paragraph(ART1)], flags=F.COMPRESSED | F.PASSWORD),
            R.ENCRYPTED_DOCUMENT, "password")
    _reject(tmp_path, "drm.hwp", F.hwp5([F.paragraph(ART1)], flags=F.COMPRESSED | hwp5_mod.DRM),
            R.ENCRYPTED_DOCUMENT, "DRM")
    _reject(tmp_path, "dist.hwp", F.hwp5([F.paragraph(ART1)], flags=F.COMPRESSED | F.DISTRIBUTION),
            R.UNSUPPORTED_DOCUMENT, "배포용")
    _reject(tmp_path, "v6.hwp", F.hwp5([F.paragraph(ART1)], version=0x06000000),
            R.UNSUPPORTED_DOCUMENT, "version 6.0.0.0")
    _reject(tmp_path, "hwp3.hwp", b"HWP Document File V3.00 \x1a\x01\x02\x03\x04\x05" + b"\0" * 2000,
            R.UNSUPPORTED_DOCUMENT, "HWP 3.x")


def test_hwp5_damaged_documents(tmp_path):
    good = F.paragraph(ART1)
    _reject(tmp_path, "zlib.hwp", F.hwp5([good, good], raw_sections={1: b"\x07 not deflate at all" * 10}),
            R.CORRUPT_DOCUMENT, "BodyText/Section1: bad compressed data")
    _reject(tmp_path, "cut.hwp", F.hwp5([good], raw_sections={0: F.deflate(good)[:-6]}),
            R.CORRUPT_DOCUMENT, "BodyText/Section0")
    _reject(tmp_path, "record.hwp", F.hwp5([good[:-3]], flags=0),  # the last record is 3 bytes short
            R.CORRUPT_DOCUMENT, "BodyText/Section0: record (tag 68)")
    _reject(tmp_path, "garbage.hwp", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x42" * 3000,
            R.CORRUPT_DOCUMENT, "OLE")
    no_header = F.cfb({"BodyText/Section0": F.deflate(good), "Pad": b"x" * 2000})
    _reject(tmp_path, "noheader.hwp", no_header, R.CORRUPT_DOCUMENT, "no FileHeader")
    no_body = F.cfb({"FileHeader": F.file_header(), "Pad": b"x" * 2000})
    _reject(tmp_path, "nobody.hwp", no_body, R.CORRUPT_DOCUMENT, "no BodyText/Section")


def test_a_directory_named_like_a_document_is_unreadable_not_fatal(tmp_path):
    (tmp_path / "folder.hwp").mkdir()
    docs = list(CorpusReader([InputFile(str(tmp_path / "folder.hwp"))]).run())
    assert [d.metadata[R.REASON] for d in docs] == [R.UNREADABLE_FILE]
    assert docs[0].metadata["input_sha256"] == ""
    detail = docs[0].metadata[R.DETAIL]  # the OSError's message names the file by its portable name only
    assert "IsADirectoryError" in detail and "default/folder.hwp" in detail and str(tmp_path) not in detail


# ---------------------------------------------------------------- provenance

def test_every_record_carries_source_license_file_line_and_input_hash(tmp_path):
    csv_path, hwp_path = tmp_path / "q.csv", tmp_path / "doc.hwp"
    jl_path, jl2_path = tmp_path / "web" / "x.jsonl", tmp_path / "web" / "2024" / "y.jsonl"
    jl2_path.parent.mkdir(parents=True)
    csv_path.write_text("question,body\nq1,질문 본문\nq2,너무,많음\n", encoding="utf-8")
    hwp_path.write_bytes(F.hwp5([F.paragraph(ART1)], flags=F.COMPRESSED | F.PASSWORD))
    jl_path.write_text(json.dumps({"doc": "가나다"}, ensure_ascii=False) + "\n{bad\n", encoding="utf-8")
    jl2_path.write_text(json.dumps({"doc": "라마바"}, ensure_ascii=False) + "\n", encoding="utf-8")
    inputs = (describe_inputs([csv_path], "qa", "CC-BY-4.0", text_key="body", id_key="question")
              + describe_inputs([hwp_path], "gov-hwp", "KOGL-1")
              + [InputFile(str(p), "web", "unknown", text_key="doc", sha256="")  # hashed by the reader
                 for p in (jl_path, jl2_path)])
    docs = list(CorpusReader(inputs).run())
    assert len(docs) == 6 and [R.is_rejected(d) for d in docs] == [False, True, True, False, True, False]
    # file: the path below the source's root (a one-file source: the file's name), never an absolute path
    expect = {("qa", "q.csv"): (csv_path, "CC-BY-4.0"), ("gov-hwp", "doc.hwp"): (hwp_path, "KOGL-1"),
              ("web", "x.jsonl"): (jl_path, "unknown"), ("web", "2024/y.jsonl"): (jl2_path, "unknown")}
    for d in docs:
        md = d.metadata
        path, lic = expect[md["source"], md[R.FILE]]
        assert md["license"] == lic and str(tmp_path) not in json.dumps(md, ensure_ascii=False)
        assert md["input_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert isinstance(md[R.LINE], int) and md[R.LINE] >= 1
    assert docs[0].id == "q1" and docs[0].text == "질문 본문"  # per-source text and id keys
    assert docs[1].id == "qa/q.csv:3" and R.location(docs[1].metadata) == "qa/q.csv:3"
    assert docs[2].metadata[R.REASON] == R.ENCRYPTED_DOCUMENT and docs[2].id == "gov-hwp/doc.hwp"
    assert docs[3].id == "web/x.jsonl:1" and docs[3].text == "가나다"
    assert docs[5].id == "web/2024/y.jsonl:1" and docs[5].text == "라마바"


def test_default_ids_are_per_source_unique_and_independent_of_other_sources(tmp_path):
    """Each source is rooted at its own folder: two sources may hold the same file names, and a source's ids do
    not change when another source, elsewhere on disk, is added."""
    a, b = tmp_path / "mnt1" / "law" / "data.jsonl", tmp_path / "other" / "deep" / "qa" / "data.jsonl"
    for p, text in ((a, "법률 본문"), (b, "질의 응답")):
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"text": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    alone = list(CorpusReader(describe_inputs([a], "law")).run())
    both = list(CorpusReader(describe_inputs([a], "law") + describe_inputs([b], "qa")).run())
    assert [d.id for d in alone] == ["law/data.jsonl:1"]
    assert [d.id for d in both] == ["law/data.jsonl:1", "qa/data.jsonl:1"]
    assert [d.metadata[R.FILE] for d in both] == ["data.jsonl", "data.jsonl"]
    # source "x" with b/data.jsonl and source "x/b" with data.jsonl would share a name: refused before reading
    c, e = tmp_path / "x" / "b" / "data.jsonl", tmp_path / "x" / "e.jsonl"
    c.parent.mkdir(parents=True)
    for p in (c, e):
        p.write_text(json.dumps({"text": "가"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="are both 'x/b/data.jsonl'"):
        CorpusReader(describe_inputs([c, e], "x") + describe_inputs([a], "x/b"))


def test_reader_refuses_bare_paths():
    with pytest.raises(TypeError, match="InputFile"):
        CorpusReader(["a.jsonl"])


def test_pipeline_reads_office_documents_and_csv_in_parallel(tmp_path):
    """Through both LocalPipelineExecutor passes: documents kept or rejected, provenance in the output."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.hwp").write_bytes(F.hwp5([_body()]))
    (d / "b.hwpx").write_bytes(F.hwpx([F.section_xml(F.p(F.run(F.t(ART2 + " " + NOTE))))]))
    (d / "c.hwp").write_bytes(F.hwp5([F.paragraph(ART1)], flags=F.COMPRESSED | F.PASSWORD))
    (d / "d.csv").write_text("id,text\nr1,\"" + ART1 + "\n" + ART2 + "\"\nr2,깨진\"행,x\n", encoding="utf-8")
    shutil.copy(KO_LAW, d / "e.txt")
    files = sorted(d.iterdir())
    inputs = describe_inputs(files, source="gov", license="KOGL-1")
    report = prepare_corpus(inputs, tmp_path / "out", CorpusSettings(min_chars=5, tasks=2, workers=2,
                                                                    compression=None, pii=PIISettings(enabled=False),
                                                                    quality=QualitySettings(enabled=False)))
    assert report.files_in == 5 and report.docs_in == 6
    assert report.rejected_by_reason == {"bad_csv": 1, "encrypted_document": 1}
    kept = [json.loads(line) for f in sorted((tmp_path / "out" / "clean").glob("*.jsonl")) for line in open(f)]
    assert [k["id"] for k in kept] == ["gov/a.hwp", "gov/b.hwpx", "r1", "gov/e.txt"]
    assert kept[0]["text"].split("\n") == EXPECTED
    for k in kept:
        assert k["metadata"]["source"] == "gov" and len(k["metadata"]["input_sha256"]) == 64
    rejected = [json.loads(line) for f in (tmp_path / "out" / "rejected").glob("*.jsonl") for line in open(f)]
    assert {r["location"] for r in rejected} == {"gov/c.hwp:1", "gov/d.csv:4"}
    assert all(len(r["metadata"]["input_sha256"]) == 64 for r in rejected)
