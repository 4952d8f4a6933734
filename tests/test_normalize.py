"""Normalisation on real Korean text: NFC always, then CRLF, invisible characters, whitespace
and emoticon runs; legal and numeric text untouched; idempotent; counted in datatrove stats."""

from __future__ import annotations

import json
import random
import re
import unicodedata
from pathlib import Path

import pytest
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader

from data_prep.corpus import records as R
from data_prep.corpus.normalize import NFCNormalizer, NormalizeSettings, TextNormalizer
from data_prep.corpus.writers import WorkWriter

FIXTURES = sorted((Path(__file__).parents[1] / "examples" / "data" / "ko-gov-sample").glob("*.txt"))
LEGAL = ("제3조 제2항에 따라 ① ② ③ 각 호의 사항을 정한다. 징집ㆍ소집·동원․훈련, 大韓民國 憲法 …\n"
         "예산: 1,234,567원, 1000000원, 2011. 12. 31.\n"
         "② --------------- (현행과 같음)\n김○○ 의원, 010-****-1234, 하하하하, aaaa, 제1조의2")


def norm(text: str, **kw) -> str:
    return TextNormalizer(NormalizeSettings(**kw)).normalize(text)[0]


@pytest.mark.parametrize("raw, expected", [
    ("첫째 줄\r\n둘째 줄\r셋째 줄", "첫째 줄\n둘째 줄\n셋째 줄"),  # CRLF and a lone CR
    ("1쪽\x0c2쪽\u2028끝", "1쪽\n2쪽\n끝"),  # form feed (pdftotext page break), line separator
    ("\ufeff국\u200b민\u200c에\u200d게\u00ad\u2060 알\x00림\x07\x1b\x7f\x9f", "국민에게 알림"),
    ("대한민국\u00a0헌법\u3000전문\u2009제1조", "대한민국 헌법 전문 제1조"),  # NBSP, ideographic, thin space
    ("  제1조   (목적) \t\t 이 법은  \n\n\n\n\n 제2조\t \n", "제1조 (목적) 이 법은\n\n 제2조"),
    ("구분\t금액\t비고", "구분\t금액\t비고"),  # a single tab is a table column: kept
    ("ㅋㅋㅋㅋㅋ 진짜 웃기다", "ㅋㅋㅋ 진짜 웃기다"),
    ("너무 슬퍼ㅠㅠㅠㅠ", "너무 슬퍼ㅠㅠㅠ"),
    ("대박!!!!! 정말?????", "대박!!! 정말???"),
    ("그래서..... 음~~~~~ ;;;;; ^^^^^^ ……………", "그래서... 음~~~ ;;; ^^^ ………"),
    ("좋아요😂😂😂😂😂 ♥♥♥♥", "좋아요😂😂😂 ♥♥♥"),
    ("ㅋㅎㅋㅎㅋㅎㅋㅎㅋㅎ 헐?!?!?!?!", "ㅋㅎㅋㅎㅋㅎ 헐?!?!?!"),  # two-character emoticon units
    ("ㅋㅋㅋ ㅠㅠ !!! ...", "ㅋㅋㅋ ㅠㅠ !!! ..."),  # at the limit: unchanged
    ("\u1112\u1161\u11ab\u1100\u116e\u11a8", "한국"),  # decomposed jamo composed (NFC)
    ("\u1112\u200b\u1161\u11ab", "한"),  # a zero-width space inside a jamo sequence: removed, then composed
])
def test_rewrites(raw, expected):
    assert norm(raw) == expected


def test_legal_and_numeric_text_is_untouched():
    assert norm(LEGAL) == LEGAL
    assert norm("1000000000 0000000 하하하하하하 aaaaaaa ○○○○○ ㆍㆍㆍㆍㆍ ·····") == (
        "1000000000 0000000 하하하하하하 aaaaaaa ○○○○○ ㆍㆍㆍㆍㆍ ·····")


def test_fixture_documents_change_in_whitespace_only():
    n = TextNormalizer()
    for path in FIXTURES:
        raw = path.read_bytes().decode("utf-8-sig")
        text, changed = n.normalize(raw)
        assert ("\r\n" in raw or "\x0c" in raw) and not re.search("[\r\x0c]", text), path.name
        assert set(changed) == {"newlines_fixed", "whitespace_fixed"}, path.name
        assert re.sub(r"\s", "", text) == re.sub(r"\s", "", raw), path.name
        assert "  " not in text and "\n\n\n" not in text and text == text.strip()
    raw = FIXTURES[-1].read_bytes().decode("utf-8-sig")
    assert raw.count("\r\n") > 300  # CRLF: byte-fallback tokens for the tokenizer if kept
    constitution = n.normalize(raw)[0]
    assert "제1조 ① 대한민국은 민주공화국이다." in constitution and "제130조 ① 국회는 헌법개정안이" in constitution


def test_settings_switch_each_rewrite():
    raw = "가\r\n나\u200b다  라 ㅋㅋㅋㅋㅋ"
    assert norm(raw) == "가\n나다 라 ㅋㅋㅋ"
    assert norm(raw, enabled=False) == raw  # NFC only
    assert norm(unicodedata.normalize("NFD", raw), enabled=False) == raw
    assert norm(raw, newlines=False) == "가\r\n나다 라 ㅋㅋㅋ"  # \r kept: it breaks the line
    assert norm(raw, control_chars=False) == "가\n나\u200b다 라 ㅋㅋㅋ"
    assert norm(raw, whitespace=False) == "가\n나다  라 ㅋㅋㅋ"
    assert norm(raw, max_repeat=0) == "가\n나다 라 ㅋㅋㅋㅋㅋ"
    assert norm("ㅋㅋㅋㅋㅋ!!!!", max_repeat=2) == "ㅋㅋ!!"
    assert norm("ㅋㅋㅋㅋㅋ!!!!", max_repeat=1) == "ㅋ!"


def test_bad_max_repeat_names_the_key():
    with pytest.raises(ValueError, match=r"data\.normalize\.max_repeat"):
        TextNormalizer(NormalizeSettings(max_repeat=-1))


def test_idempotent():
    n = TextNormalizer()
    once = lambda t: n.normalize(t)[0]
    samples = [p.read_bytes().decode("utf-8-sig") for p in FIXTURES] + [LEGAL]
    # random strings over the characters the rewrites act on, where rewrites can interact
    alphabet = ["ㅋ", "ㅎ", "ㅠ", "!", "?", ".", "~", "^", " ", "\t", "\n", "\r", "\u200b", "\u00a0",
                "가", "1", "a", "😂", "\u1112", "\u1161", "\u11ab", "-", "ㆍ"]
    rng = random.Random(0)
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(3000)]
    for s in samples:
        assert once(once(s)) == once(s), repr(s)


def _doc(text: str, i: int) -> Document:
    return Document(text=text, id=str(i), metadata={R.FILE_INDEX: 0, R.FILE: "x.jsonl", R.LINE: i})


def test_step_stats_sha256_and_rejected_docs_kept_as_read():
    texts = ["국민\r\n주권", "ㅋㅋㅋㅋㅋ 웃겨", unicodedata.normalize("NFD", "한국 정부"), "이미 정상인 문장", "공백  두칸\u200b"]
    docs = [_doc(t, i) for i, t in enumerate(texts)]
    rejected = R.reject(_doc("깨진\r\n레코드ㅋㅋㅋㅋㅋ", 9), R.BAD_JSON)
    step = TextNormalizer()
    out = list(step.run(iter(docs + [rejected])))
    assert [d.text for d in out] == ["국민\n주권", "ㅋㅋㅋ 웃겨", "한국 정부", "이미 정상인 문장", "공백 두칸",
                                     "깨진\r\n레코드ㅋㅋㅋㅋㅋ"]
    for d in out:
        assert d.metadata[R.SHA256] == R.text_sha256(d.text)
    counts = {k: int(v.total) for k, v in step.stats.stats.items() if k != "time"}  # not timing
    assert counts == {"normalized": 5, "nfc_changed": 1, "newlines_fixed": 1, "squeezed": 1,
                      "control_removed": 1, "whitespace_fixed": 1}
    assert NFCNormalizer is TextNormalizer  # the name pipeline.py uses


def test_through_local_pipeline_executor(tmp_path):
    (tmp_path / "in").mkdir()
    rows = [{"id": p.name, "text": p.read_bytes().decode("utf-8-sig")} for p in FIXTURES]
    rows += [{"id": "chat-1", "text": "ㅋㅋㅋㅋㅋㅋ 진짜 웃기다"}, {"id": "chat-2", "text": "좋아요!!!!!\u200b"},
             {"id": "chat-3", "text": "여행은 언제나 좋죠."}]
    for i in range(2):  # two files, one per task
        (tmp_path / "in" / f"{i}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[i::2]), encoding="utf-8")
    step = TextNormalizer()
    pipeline = [JsonlReader(str(tmp_path / "in")), step, WorkWriter(str(tmp_path / "work"))]
    stats = LocalPipelineExecutor(pipeline, tasks=2, workers=2, logging_dir=str(tmp_path / "logs"),
                                  skip_completed=False, start_method="fork").run()
    counts = next({k: int(v.total) for k, v in s.stats.items()} for s in stats.stats if s.name == str(step))
    assert counts["normalized"] == 14
    assert counts["newlines_fixed"] == 11 and counts["whitespace_fixed"] == 11  # every fixture file
    assert counts["squeezed"] == 2 and counts["control_removed"] == 1 and "nfc_changed" not in counts
    out = [json.loads(line) for f in sorted((tmp_path / "work").glob("*.jsonl")) for line in f.open(encoding="utf-8")]
    by_id = {r["id"]: r["text"] for r in out}
    assert len(out) == 14 and by_id["chat-1"] == "ㅋㅋㅋ 진짜 웃기다" and by_id["chat-2"] == "좋아요!!!"
    assert all("\r" not in r["text"] and r["metadata"]["sha256"] == R.text_sha256(r["text"]) for r in out)
