"""Decontamination against local eval files: documents that copy an eval item (re-spaced,
re-punctuated, inside other text) are dropped or flagged with the eval file, line and a snippet;
others pass; a missing eval file is an error naming its recipe key."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor

from data_prep.corpus import records as R
from data_prep.corpus.decontam import FLAG, DecontamSettings, Decontaminate
from data_prep.corpus.writers import WorkWriter
from tests.test_near_dedup import ReadJsonl

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
CONSTITUTION = (DATA / "ko-gov-sample" / "kolaw_constitution.txt").read_text(encoding="utf-8")
# 제10조, as an eval item would quote it (long: its 50-character n-grams are what is matched)
ART_10 = ("모든 국민은 인간으로서의 존엄과 가치를 가지며, 행복을 추구할 권리를 가진다. "
          "국가는 개인이 가지는 불가침의 기본적 인권을 확인하고 이를 보장할 의무를 진다.")
SHORT_Q = "공무원의 육아휴직 대상 자녀 나이는 몇 세인가요?"  # shorter than 50 key characters: matched whole
TINY_Q = "헌법 제1조는?"  # under min_item_chars: skipped


@pytest.fixture
def eval_files(tmp_path) -> list[str]:
    jl = tmp_path / "ko_law_qa.jsonl"
    jl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {"question": "다음 조문의 빈칸을 채우시오.", "choices": ["가", "나"]},
        {"question": ART_10, "choices": ["존엄", "자유"]},
        {"question": TINY_Q},
    ]), encoding="utf-8")
    txt = tmp_path / "questions.txt.gz"
    with gzip.open(txt, "wt", encoding="utf-8") as f:
        f.write("\n첫 줄은 비어 있지 않은 질문입니다만 아무 데도 나오지 않습니다\n" + SHORT_Q + "\n")
    return [str(jl), str(txt)]


def docs_of(texts: list[str]) -> list[Document]:
    return [Document(text=t, id=f"d{i}", metadata={R.FILE: "c.jsonl", R.LINE: i + 1, R.FILE_INDEX: 0})
            for i, t in enumerate(texts)]


CORPUS = [
    CONSTITUTION,  # holds 제10조 verbatim
    "오늘 공부한 내용: " + ART_10.replace(" ", "").replace(",", "") + " ㅋㅋ 외우기 힘들다",  # re-spaced copy inside a post
    "행복을 추구할 권리는 중요하다고 생각해요.",  # a phrase of it, far below 50 characters: not contamination
    "질문 있어요 " + SHORT_Q.replace(" ", "  ") + " 알려주세요",  # the short eval question, whole
    "헌법 제1조는? 궁금하네요",  # the tiny question: skipped as too generic
]


def test_drop_rejects_copies_with_eval_file_line_and_snippet(eval_files):
    s = DecontamSettings(enabled=True, eval_files=eval_files, text_key="question")
    out = list(Decontaminate(s).run(iter(docs_of(CORPUS))))
    reasons = [d.metadata.get(R.REASON) for d in out]
    assert reasons == [R.CONTAMINATED, R.CONTAMINATED, None, R.CONTAMINATED, None]
    assert f"{eval_files[0]}:2" in out[0].metadata[R.DETAIL] and "존엄과 가치를" in out[0].metadata[R.DETAIL]
    assert f"{eval_files[0]}:2" in out[1].metadata[R.DETAIL]
    assert f"{eval_files[1]}:3" in out[3].metadata[R.DETAIL] and "육아휴직" in out[3].metadata[R.DETAIL]


def test_flag_keeps_documents_and_records_the_match(eval_files):
    s = DecontamSettings(enabled=True, eval_files=eval_files, text_key="question", action="flag")
    out = list(Decontaminate(s).run(iter(docs_of(CORPUS))))
    assert not any(R.is_rejected(d) for d in out)
    flagged = {d.id: d.metadata[FLAG] for d in out if FLAG in d.metadata}
    assert set(flagged) == {"d0", "d1", "d3"}
    info = flagged["d1"]
    assert info["eval_file"] == eval_files[0] and info["eval_line"] == 2
    assert info["matches"] > 10  # every 50-character window of the copied article
    assert info["snippet"] in CORPUS[1] and len(info["snippet"]) >= 50


def test_min_matches_and_already_rejected(eval_files):
    s = DecontamSettings(enabled=True, eval_files=eval_files, text_key="question", min_matches=1000)
    assert not any(R.is_rejected(d) for d in Decontaminate(s).run(iter(docs_of(CORPUS))))
    docs = docs_of(CORPUS[:2])
    R.reject(docs[0], R.TOO_LONG, "test")
    step = Decontaminate(DecontamSettings(enabled=True, eval_files=eval_files, text_key="question"))
    out = list(step.run(iter(docs)))
    assert out[0].metadata[R.REASON] == R.TOO_LONG and out[1].metadata[R.REASON] == R.CONTAMINATED


def test_disabled_passes_everything_through():
    out = list(Decontaminate(DecontamSettings()).run(iter(docs_of(CORPUS))))
    assert not any(R.is_rejected(d) or FLAG in d.metadata for d in out)


def test_missing_or_bad_eval_files_are_errors_naming_the_key(eval_files, tmp_path):
    with pytest.raises(ValueError, match=r"data\.decontam\.eval_files\[1\]: .*nope\.jsonl does not exist"):
        Decontaminate(DecontamSettings(enabled=True, eval_files=[eval_files[0], str(tmp_path / "nope.jsonl")]))
    with pytest.raises(ValueError, match=r"data\.decontam\.eval_files is empty"):
        Decontaminate(DecontamSettings(enabled=True))
    with pytest.raises(ValueError, match=r"data\.decontam\.action"):
        Decontaminate(DecontamSettings(action="delete"))
    with pytest.raises(ValueError, match=r"data\.decontam\.text_key='text'"):  # the jsonl items are under 'question'
        list(Decontaminate(DecontamSettings(enabled=True, eval_files=eval_files)).run(iter(docs_of(CORPUS))))


def test_in_a_datatrove_run_with_two_tasks(eval_files, tmp_path):
    files = []
    for f, chunk in enumerate((CORPUS[:3], CORPUS[3:])):
        p = tmp_path / f"part{f}.jsonl"
        p.write_text("".join(json.dumps({"id": f"p{f}-{i}", "text": t}, ensure_ascii=False) + "\n"
                             for i, t in enumerate(chunk)), encoding="utf-8")
        files.append(str(p))
    step = Decontaminate(DecontamSettings(enabled=True, eval_files=eval_files, text_key="question"))
    stats = LocalPipelineExecutor([ReadJsonl(files), step, WorkWriter(str(tmp_path / "out"))], tasks=2, workers=2,
                                  logging_dir=str(tmp_path / "logs"), skip_completed=False, start_method="fork").run()
    rows = [json.loads(line) for p in sorted((tmp_path / "out").glob("*.jsonl")) for line in p.open(encoding="utf-8")]
    assert sorted(r["id"] for r in rows if r["metadata"].get(R.REASON) == R.CONTAMINATED) == ["p0-0", "p0-1", "p1-0"]
    counters = next(s for s in stats.stats if s.name == str(step)).stats
    assert counters["checked"].total == 5 and counters[f"rejected_{R.CONTAMINATED}"].total == 3
