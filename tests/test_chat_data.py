"""The chat data layer of the SFT and DPO stages (kgov_train.chat): formats, checks, rejects, mixture, token lengths.

Fast: no model, no training. The token-length tests train a 1,000-piece tokenizer with the project's chat template on
the ko-gov-sample texts (well under a second).
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import REPO_ROOT
from kgov_train.chat import ChatDataError, input_files, load_chat_data, token_lengths
from kgov_train.chat.checks import check_dpo_record, check_sft_record
from kgov_train.chat.formats import convert
from kgov_train.config.schema import DPOConfig, SFTConfig
from kgov_train.errors import RecipeError


def sec(kind: str = "sft", **keys):
    """A stage section as the recipe gives it (typed), with these keys set."""
    return OmegaConf.merge(OmegaConf.structured(SFTConfig if kind == "sft" else DPOConfig), keys)


def write_jsonl(path: Path, rows: list) -> Path:
    """Objects as JSON lines; str items are written as they are (bad lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def chat(q: str, a: str, system: str | None = None) -> dict:
    msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"messages": ([{"role": "system", "content": system}] if system else []) + msgs}


def rejects_of(data) -> list[dict]:
    return [json.loads(line) for line in data.rejects_path.read_text(encoding="utf-8").splitlines()]


def read_rejects(tmp_path: Path) -> list[dict]:
    """The rejects file of a load that raised (no ChatData to ask)."""
    path = tmp_path / "stage" / "rejects" / "rejected.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def load(tmp_path: Path, kind: str = "sft", seed: int = 0, tokenizer=None, **keys):
    return load_chat_data(sec(kind, **keys), kind, kind, tmp_path / "stage", seed, tokenizer)


# ---------------------------------------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------------------------------------


def test_alpaca_koalpaca_records():
    rec = {"instruction": "다음 민원을 한 문장으로 요약하세요.", "input": "주민등록등본을 온라인으로 떼고 싶은데 방법을 모르겠습니다.",
           "output": "온라인 주민등록등본 발급 방법을 묻는 민원입니다."}
    out, layout = convert(rec, "sft", "alpaca")
    assert layout == "alpaca"
    assert out["messages"] == [
        {"role": "user", "content": "다음 민원을 한 문장으로 요약하세요.\n\n주민등록등본을 온라인으로 떼고 싶은데 방법을 모르겠습니다."},
        {"role": "assistant", "content": "온라인 주민등록등본 발급 방법을 묻는 민원입니다."}]
    for blank in ("", "  \n", None):  # no input: the instruction alone (KoAlpaca v1.1 has no input column)
        out, _ = convert({"instruction": "여권 재발급 절차는?", "input": blank, "output": "구청에서 신청합니다."}, "sft", "alpaca")
        assert out["messages"][0]["content"] == "여권 재발급 절차는?"
    assert convert({"instruction": "질문만"}, "sft", "alpaca") == (None, "missing_output")
    assert convert({"output": "답만"}, "sft", "alpaca") == (None, "missing_instruction")
    assert convert({"instruction": 3, "output": "x"}, "sft", "alpaca") == (None, "field_not_text")


def test_qa_columns():
    assert convert({"Q": "12시 땡!", "A": "하루가 또 가네요.", "label": 0}, "sft", "qa")[0] == chat("12시 땡!", "하루가 또 가네요.")
    assert convert({"질문": "전입신고 기한은?", "답변": "14일 이내입니다."}, "sft", "qa")[0] == chat("전입신고 기한은?", "14일 이내입니다.")
    assert convert({"question": "q", "answer": "a", "질문": "무시"}, "sft", "qa")[0] == chat("q", "a")  # first present
    rec = {"민원": "도로가 파였어요.", "회신": "보수하겠습니다."}
    assert convert(rec, "sft", "qa")[1] == "missing_question"
    assert convert(rec, "sft", "qa", question_key="민원", answer_key="회신")[0] == chat("도로가 파였어요.", "보수하겠습니다.")
    assert convert({"질문": "답이 없음"}, "sft", "qa") == (None, "missing_answer")


def test_auto_detects_each_record():
    assert convert(chat("안녕", "안녕하세요"), "sft")[1] == "messages"
    assert convert({"instruction": "i", "output": "o"}, "sft")[1] == "alpaca"
    assert convert({"instruction": "i", "answer": "o"}, "sft")[1] == "qa"  # no output: the instruction is the question
    assert convert({"Q": "q", "A": "a"}, "sft")[1] == "qa"
    assert convert({"text": "평문"}, "sft") == (None, "unknown_format")
    assert convert(["not", "an", "object"], "sft") == (None, "not_an_object")


def test_preference_conversational_plain_and_implicit_prompt():
    u, a, b = ({"role": r, "content": c} for r, c in (("user", "질문"), ("assistant", "좋은 답"), ("assistant", "나쁜 답")))
    conv = {"prompt": [u], "chosen": [a], "rejected": [b]}
    assert convert(conv, "dpo")[0] == conv
    plain = {"prompt": "질문", "chosen": "좋은 답", "rejected": "나쁜 답"}
    assert convert(plain, "dpo") == (conv, "preference")
    implicit = {"chosen": [u, a], "rejected": [u, b]}  # TRL's implicit prompt: the shared turns
    assert convert(implicit, "dpo")[0] == conv
    assert check_dpo_record(convert({"chosen": [u, a], "rejected": [b]}, "dpo")[0]) == "prompt_no_messages"


# ---------------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------------


def test_jsonl_json_parquet_inputs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"질문": f"민원 {i}번은 어디에 내나요?", "답변": f"{i}번 창구입니다.", "분류": "안내"} for i in range(6)]
    write_jsonl(tmp_path / "a.jsonl", rows[:2])
    (tmp_path / "b.json").write_text(json.dumps(rows[2:4], ensure_ascii=False), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows[4:]), tmp_path / "c.parquet")
    with gzip.open(tmp_path / "d.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"instruction": "인사하세요.", "input": "", "output": "안녕하세요."}, ensure_ascii=False) + "\n")
    msgs = [chat("여권은?", "구청에서.", system="공손하게")["messages"], chat("등본은?", "정부24에서.")["messages"]]
    pq.write_table(pa.Table.from_pylist([{"messages": m, "id": i} for i, m in enumerate(msgs)]), tmp_path / "e.parquet")

    data = load(tmp_path, data=[str(tmp_path / "*.json*"), str(tmp_path / "*.parquet")], validation_fraction=0.0)
    st = data.stats["datasets"]["data"]
    assert st["read"] == st["valid"] == 9 and st["rejected"] == 0
    assert st["formats"] == {"qa": 6, "alpaca": 1, "messages": 2}
    assert len(data.train) == 9 and all(set(r) == {"messages"} for r in data.train)
    assert chat("민원 5번은 어디에 내나요?", "5번 창구입니다.") in data.train
    assert {"messages": msgs[0]} in data.train  # parquet list<struct> messages, the id column dropped
    assert {m["content"] for r in data.train for m in r["messages"]} >= {"인사하세요.", "안녕하세요."}


def test_csv_and_tsv_qa_sheets(tmp_path):
    # ChatbotData.csv's layout: Q,A,label; quoted cells may hold commas and newlines
    (tmp_path / "qa.csv").write_text('Q,A,label\n주민등록등본은 어디서 떼나요?,"정부24나, 주민센터에서요.",0\n'
                                     '"여러 줄\n질문",답,0\n칸이,모자람\n\n', encoding="utf-8")
    (tmp_path / "qa.tsv").write_text("질문\t답변\n여권 재발급은?\t구청 민원실입니다.\n", encoding="utf-8")
    data = load(tmp_path, data=[str(tmp_path / "qa.*")], validation_fraction=0.0)
    st = data.stats["datasets"]["data"]
    assert st["read"] == 4 and st["valid"] == 3 and st["rejected_by_reason"] == {"unreadable_row": 1}
    assert chat("주민등록등본은 어디서 떼나요?", "정부24나, 주민센터에서요.") in data.train
    assert chat("여러 줄\n질문", "답") in data.train and chat("여권 재발급은?", "구청 민원실입니다.") in data.train
    (bad,) = rejects_of(data)
    assert bad["file"].endswith("qa.csv") and bad["line"] == 5 and bad["reason"] == "unreadable_row"


def test_unreadable_json_file_names_key_and_file(tmp_path):
    (tmp_path / "x.json").write_text('{"Q": "한 개", "A": "리스트가 아님"}', encoding="utf-8")
    with pytest.raises(ChatDataError, match=r"sft\.data: .*x\.json holds a JSON dict, not a list"):
        load(tmp_path, data=[str(tmp_path / "x.json")])
    (tmp_path / "x.json").write_text('[{"Q": "깨진"', encoding="utf-8")
    with pytest.raises(ChatDataError, match=r"x\.json is not valid JSON \(line 1"):
        load(tmp_path, data=[str(tmp_path / "x.json")])


# ---------------------------------------------------------------------------------------------------------------------
# Checks and the rejects file
# ---------------------------------------------------------------------------------------------------------------------

U, A, S = "user", "assistant", "system"


def m(*turns) -> list[dict]:
    return [{"role": r, "content": c} for r, c in turns]


BAD_SFT = {  # reason -> a jsonl line with only that problem
    "invalid_json": "{not json",
    "not_an_object": json.dumps(["messages"]),
    "no_messages": json.dumps({"messages": []}),
    "bad_role": json.dumps({"messages": m(("bot", "안녕"), (A, "네"))}),
    "content_not_text": json.dumps({"messages": [{"role": U, "content": None}, {"role": A, "content": "네"}]}),
    "empty_content": json.dumps({"messages": m((U, "   "), (A, "네"))}),
    "system_not_first": json.dumps({"messages": m((U, "질문"), (S, "지시"), (A, "답"))}),
    "no_assistant": json.dumps({"messages": m((U, "혼잣말"))}),
    "roles_out_of_order": json.dumps({"messages": m((S, "지시"), (A, "먼저 말함"), (U, "질문"), (A, "답"))}),
    "consecutive_same_role": json.dumps({"messages": m((U, "하나"), (U, "둘"), (A, "답"))}),
    "last_turn_not_assistant": json.dumps({"messages": m((U, "질문"), (A, "답"), (U, "또 질문"))}),
    "unknown_format": json.dumps({"text": "대화가 아닌 문서"}),
    "missing_answer": json.dumps({"질문": "답이 없는 질문", "답변": None, "instruction": None}, ensure_ascii=False),
    "field_not_text": json.dumps({"instruction": "숫자 답", "output": 42}, ensure_ascii=False),
}
BAD_DPO = {
    "prompt_no_messages": json.dumps({"prompt": [], "chosen": "a", "rejected": "b"}),
    "prompt_bad_role": json.dumps({"prompt": m(("tool", "x")), "chosen": "a", "rejected": "b"}),
    "prompt_not_ending_with_user": json.dumps({"prompt": m((U, "q"), (A, "a")), "chosen": "a", "rejected": "b"}),
    "prompt_roles_out_of_order": json.dumps({"prompt": m((A, "a"), (U, "q")), "chosen": "a", "rejected": "b"}),
    "prompt_consecutive_same_role": json.dumps({"prompt": m((U, "q"), (U, "q2")), "chosen": "a", "rejected": "b"}),
    "prompt_system_not_first": json.dumps({"prompt": m((U, "q"), (S, "s"), (U, "q")), "chosen": "a", "rejected": "b"}),
    "chosen_no_messages": json.dumps({"prompt": "q", "rejected": "b"}),
    "rejected_empty_content": json.dumps({"prompt": "q", "chosen": "a", "rejected": " "}),
    "chosen_bad_role": json.dumps({"prompt": "q", "chosen": m((U, "a")), "rejected": "b"}),
    "rejected_consecutive_same_role": json.dumps({"prompt": "q", "chosen": "a", "rejected": m((A, "b"), (A, "c"))}),
    "chosen_equals_rejected": json.dumps({"prompt": "q", "chosen": "같은 답", "rejected": "같은 답"}, ensure_ascii=False),
    "invalid_json": '{"prompt": "q", "chosen": ',
}


def test_every_sft_reject_reason_is_counted_and_kept_with_file_and_line(tmp_path):
    good = json.dumps(chat("안녕", "안녕하세요"), ensure_ascii=False)
    lines = [good, *BAD_SFT.values(), "", good]
    f = write_jsonl(tmp_path / "sft.jsonl", lines)
    with open(f, "ab") as out:
        out.write(b'{"Q": "\xff\xfe", "A": "x"}\n')  # not UTF-8
    data = load(tmp_path, data=[str(f)], validation_fraction=0.0)
    st = data.stats["datasets"]["data"]
    assert st["rejected_by_reason"] == {**dict.fromkeys(BAD_SFT, 1), "invalid_utf8": 1}
    assert st["read"] == len(BAD_SFT) + 3 and st["valid"] == 2 and st["rejected"] == len(BAD_SFT) + 1
    assert data.stats["totals"]["rejected"] == len(BAD_SFT) + 1
    assert data.rejects_path == tmp_path / "stage" / "rejects" / "rejected.jsonl"
    rows = {r["reason"]: r for r in rejects_of(data)}
    assert set(rows) == set(st["rejected_by_reason"])
    for i, reason in enumerate(BAD_SFT, 2):  # the line in the file, 1-based
        assert rows[reason]["line"] == i and rows[reason]["file"] == str(f) and rows[reason]["dataset"] == "data"
    assert rows["invalid_json"]["raw"] == "{not json" and "detail" in rows["invalid_json"]
    assert rows["bad_role"]["record"] == json.loads(BAD_SFT["bad_role"])  # the record as read
    assert rows["invalid_utf8"]["line"] == len(lines) + 1


def test_every_dpo_reject_reason_is_counted_and_kept(tmp_path):
    good = {"prompt": "전입신고는 어디서?", "chosen": "주민센터나 정부24에서 합니다.", "rejected": "모릅니다."}
    f = write_jsonl(tmp_path / "dpo.jsonl", [good, *BAD_DPO.values()])
    data = load(tmp_path, "dpo", data=[str(f)], validation_fraction=0.0)
    st = data.stats["datasets"]["data"]
    assert st["rejected_by_reason"] == dict.fromkeys(BAD_DPO, 1) and st["valid"] == 1
    assert {r["reason"]: r["line"] for r in rejects_of(data)} == {r: i for i, r in enumerate(BAD_DPO, 2)}
    assert data.train == [{"prompt": m((U, good["prompt"])), "chosen": m((A, good["chosen"])),
                           "rejected": m((A, good["rejected"]))}]


def test_unreadable_parquet_row_is_a_reject(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"Q": ["주소 변경은?", "깨진 행"], "A": ["정부24에서.", "x"],
                      "when": pa.array([0, 2 ** 62], type=pa.timestamp("us"))})  # year ~146,000: no Python datetime
    pq.write_table(table, tmp_path / "qa.parquet")
    data = load(tmp_path, data=[str(tmp_path / "qa.parquet")], validation_fraction=0.0)
    assert data.stats["datasets"]["data"]["rejected_by_reason"] == {"unreadable_row": 1}
    (row,) = rejects_of(data)
    assert row["row"] == 1 and "detail" in row and row["file"].endswith("qa.parquet")
    assert data.train == [chat("주소 변경은?", "정부24에서.")]


def test_legacy_checks_keep_their_reasons():
    assert check_sft_record({"messages": m((U, "혼잣말"))}) == "no_assistant"
    assert check_dpo_record({"prompt": m((A, "질문")), "chosen": m((A, "답")), "rejected": m((A, "답2"))}) \
        == "prompt_not_ending_with_user"


def test_a_dataset_without_valid_record_names_its_key_and_files(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", [chat("안녕", "안녕하세요")])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "문서"}, "{oops"])
    datasets = [{"name": "good", "inputs": [str(good)]}, {"name": "bad", "inputs": [str(bad)], "format": "messages"}]
    with pytest.raises(ChatDataError, match=r"sft\.datasets\[1\]: no valid SFT record in .*bad\.jsonl"):
        load(tmp_path, datasets=datasets)
    reasons = [r["reason"] for r in read_rejects(tmp_path)]
    assert reasons == ["no_messages", "invalid_json"]  # written even though loading failed


# ---------------------------------------------------------------------------------------------------------------------
# Mixture: caps, weights, validation split
# ---------------------------------------------------------------------------------------------------------------------


def synthetic(tmp_path: Path, name: str, n: int, shuffle_seed: int | None = None) -> Path:
    rows = [{"question": f"{name} 질문 {i}", "answer": f"{name} 답 {i}"} for i in range(n)]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(rows)
    return write_jsonl(tmp_path / f"{name}.jsonl", rows)


def owner(rec: dict) -> str:
    return rec["messages"][0]["content"].split()[0]


def mixture(tmp_path, seed=0, caps=(None, None, None), weights=(2.0, 1.0, 1.0), shuffle=None, **keys):
    sizes = {"big": 300, "mid": 120, "small": 40}
    tmp_path.mkdir(parents=True, exist_ok=True)
    files = {n: synthetic(tmp_path, n, k, shuffle) for n, k in sizes.items()}
    datasets = [{"name": n, "inputs": [str(files[n])], "weight": w, "max_records": c}
                for (n, w, c) in zip(sizes, weights, caps)]
    keys = {"validation_fraction": 0.1, "max_validation_records": 1000, **keys}
    return load(tmp_path, seed=seed, datasets=datasets, **keys)


def test_weights_set_the_shares_and_the_size_is_kept(tmp_path):
    data = mixture(tmp_path)
    st = data.stats["datasets"]
    n = sum(s["records"] for s in st.values())
    assert len(data.train) == n == data.stats["totals"]["train"]
    shares = {k: v / n for k, v in Counter(owner(r) for r in data.train).items()}
    for name, target in (("big", 0.5), ("mid", 0.25), ("small", 0.25)):
        assert abs(shares[name] - target) < 0.01, shares
        assert st[name]["target_share"] == target and abs(st[name]["share"] - target) < 0.01
    # small is upsampled: every record at least floor(rate) times; big is subsampled: no record twice
    small = Counter(json.dumps(r, ensure_ascii=False) for r in data.train if owner(r) == "small")
    assert len(small) == st["small"]["records"] and min(small.values()) == int(st["small"]["rate"])
    big = Counter(json.dumps(r, ensure_ascii=False) for r in data.train if owner(r) == "big")
    assert max(big.values()) == 1 and st["big"]["rate"] < 1


def test_mixture_is_deterministic_for_a_seed(tmp_path):
    a = mixture(tmp_path / "a", seed=1)
    b = mixture(tmp_path / "b", seed=1)
    c = mixture(tmp_path / "c", seed=2)
    assert a.train == b.train and a.validation == b.validation
    assert a.train != c.train and a.validation == c.validation  # the seed moves training, never validation
    d = mixture(tmp_path / "d", seed=1, shuffle=7)  # the same records in another file order
    assert d.train == a.train and d.validation == a.validation


def test_caps_are_seeded_samples(tmp_path):
    data = mixture(tmp_path, caps=(50, None, 10), weights=(1.0, 1.0, 1.0))
    st = data.stats["datasets"]
    assert st["big"]["records"] == 50 and st["big"]["capped"] == st["big"]["valid"] - st["big"]["validation"] - 50
    assert st["small"]["records"] == 10 and st["mid"]["capped"] == 0
    assert len(data.train) == 50 + st["mid"]["records"] + 10
    counts = Counter(owner(r) for r in data.train)  # equal weights: equal shares, to one record
    assert set(counts) == set(st) and max(counts.values()) - min(counts.values()) <= 1
    other = mixture(tmp_path / "other", seed=5, caps=(50, None, 10), weights=(1.0, 1.0, 1.0))
    pick = {json.dumps(r) for r in data.train if owner(r) == "big"}
    assert pick != {json.dumps(r) for r in other.train if owner(r) == "big"}  # another seed, another sample


def test_validation_is_disjoint_and_stable(tmp_path):
    base = mixture(tmp_path / "a")
    val = {json.dumps(r) for r in base.validation}
    assert val and not val & {json.dumps(r) for r in base.train}
    st = base.stats["datasets"]
    assert all(s["validation"] > 0 for s in st.values()) and sum(s["validation"] for s in st.values()) == len(val)
    assert 0.05 < len(val) / base.stats["totals"]["valid"] < 0.16  # validation_fraction=0.1, by hash
    capped = mixture(tmp_path / "b", caps=(20, 20, 5), shuffle=3, seed=9)
    assert {json.dumps(r) for r in capped.validation} == val  # neither the cap, the order nor the seed moves it
    limited = mixture(tmp_path / "c", max_validation_records=10)
    small_val = {json.dumps(r) for r in limited.validation}
    assert len(small_val) == 10 and small_val < val  # the lowest hashes of the same set
    assert not small_val & {json.dumps(r) for r in limited.train}
    assert len(limited.train) == len(base.train) + len(val) - 10  # the others went back to training


def test_records_sharing_a_prompt_stay_on_one_side(tmp_path):
    rows = [{"prompt": f"질문 {i}", "chosen": f"좋은 답 {i}-{j}", "rejected": f"나쁜 답 {i}-{j}"} for i in range(60)
            for j in range(3)]
    data = load(tmp_path, "dpo", data=[str(write_jsonl(tmp_path / "p.jsonl", rows))], validation_fraction=0.2)
    val_prompts = {r["prompt"][0]["content"] for r in data.validation}
    assert val_prompts and not val_prompts & {r["prompt"][0]["content"] for r in data.train}
    assert len(data.validation) == 3 * len(val_prompts)


# ---------------------------------------------------------------------------------------------------------------------
# System prompt
# ---------------------------------------------------------------------------------------------------------------------


def test_system_prompt_is_added_where_there_is_none(tmp_path):
    f = write_jsonl(tmp_path / "a.jsonl", [chat("안녕", "안녕하세요"), chat("등본은?", "정부24.", system="짧게 답하라.")])
    g = write_jsonl(tmp_path / "b.jsonl", [{"Q": "여권은?", "A": "구청에서."}])
    h = write_jsonl(tmp_path / "c.jsonl", [{"Q": "날씨는?", "A": "맑아요."}])
    datasets = [{"name": "a", "inputs": [str(f)]}, {"name": "b", "inputs": [str(g)], "system_prompt": "법률 도우미입니다."},
                {"name": "c", "inputs": [str(h)], "system_prompt": ""}]
    data = load(tmp_path, datasets=datasets, system_prompt="당신은 공공기관 민원 도우미입니다.", validation_fraction=0.0)
    firsts = {r["messages"][1]["content"]: r["messages"][0] for r in data.train}
    assert firsts["안녕"] == {"role": "system", "content": "당신은 공공기관 민원 도우미입니다."}
    assert firsts["등본은?"] == {"role": "system", "content": "짧게 답하라."}  # its own system turn is kept
    assert firsts["여권은?"] == {"role": "system", "content": "법률 도우미입니다."}  # the dataset's prompt wins
    assert {"messages": m((U, "날씨는?"), (A, "맑아요."))} in data.train  # "" turns it off for that dataset

    dpo = load(tmp_path / "d", "dpo", data=[str(write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "질문", "chosen": "좋은 답", "rejected": "나쁜 답"}]))], system_prompt="공손하게.", validation_fraction=0.0)
    assert dpo.train[0]["prompt"] == m((S, "공손하게."), (U, "질문"))


# ---------------------------------------------------------------------------------------------------------------------
# Token lengths
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from data_prep.tokenizer.build import BuildSettings, build_tokenizer

    root = tmp_path_factory.mktemp("tok")
    (root / "clean").mkdir()
    with open(root / "clean" / "00000.jsonl", "w", encoding="utf-8") as f:
        for p in sorted((REPO_ROOT / "examples/data/ko-gov-sample").glob("*.txt")):
            f.write(json.dumps({"id": p.stem, "text": p.read_text(encoding="utf-8"), "metadata": {"source": "t"}},
                               ensure_ascii=False) + "\n")
    build_tokenizer(root / "clean", root / "out", BuildSettings(vocab_size=1000, heldout_fraction=0.0))
    return AutoTokenizer.from_pretrained(str(root / "out"))


def test_token_lengths_match_the_chat_template(tokenizer):
    rec = {"messages": m((S, "공손하게."), (U, "대한민국의 주권은 누구에게 있나요?"), (A, "국민에게 있습니다."))}
    (prompt, total), = token_lengths([rec], "sft", tokenizer)
    full = tokenizer.apply_chat_template(rec["messages"], tokenize=True, return_dict=False)
    head = tokenizer.apply_chat_template(rec["messages"][:2], tokenize=True, add_generation_prompt=True,
                                         return_dict=False)
    assert (prompt, total) == (len(head), len(full)) and full[:len(head)] == head
    pair = {"prompt": rec["messages"][:2], "chosen": m((A, "국민")), "rejected": m((A, "아주 길고 장황한 틀린 대답입니다."))}
    (p, t), = token_lengths([pair], "dpo", tokenizer)
    assert p == prompt and t == len(tokenizer.apply_chat_template(pair["prompt"] + pair["rejected"], tokenize=True,
                                                                  return_dict=False))


def length_rows() -> list[dict]:
    article = "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다. "
    return ([{"Q": f"짧은 질문 {i}", "A": f"짧은 답 {i}"} for i in range(5)]
            + [{"Q": f"긴 답 질문 {i}", "A": article * 4} for i in range(3)]  # the answer crosses max_length
            + [{"Q": article * 6 + str(i), "A": "네."} for i in range(2)])  # the prompt alone fills it


@pytest.mark.parametrize("overlong", ["truncate", "drop"])
def test_truncate_or_drop_counts(tmp_path, tokenizer, overlong):
    f = write_jsonl(tmp_path / "qa.jsonl", length_rows())
    lens = token_lengths(load(tmp_path / "probe", data=[str(f)], validation_fraction=0.0).train, "sft", tokenizer)
    L = 64
    assert sum(p >= L for p, _ in lens) == 2 and sum(p < L < t for p, t in lens) == 3  # the rows are as meant

    data = load(tmp_path, tokenizer=tokenizer, data=[str(f)], max_length=L, overlong=overlong,
                validation_fraction=0.0)
    st = data.stats["datasets"]["data"]
    if overlong == "truncate":
        assert (st["truncated"], st["dropped"], st["dropped_by_reason"]) == (3, 2, {"prompt_too_long": 2})
        assert len(data.train) == 8
    else:
        assert (st["truncated"], st["dropped"]) == (0, 5)
        assert st["dropped_by_reason"] == {"prompt_too_long": 2, "too_long": 3}
        assert len(data.train) == 5
    assert st["rejected"] == 0 and data.stats["totals"]["dropped"] == st["dropped"]
    rows = rejects_of(data)
    assert Counter(r["reason"] for r in rows) == Counter(st["dropped_by_reason"])
    for r in rows:
        assert r["file"] == str(f) and r["line"] >= 6 and r["tokens"] > L and "messages" in r["record"]
    assert all(r["prompt_tokens"] >= L for r in rows if r["reason"] == "prompt_too_long")


def test_dpo_lengths_measure_both_answers(tmp_path, tokenizer):
    long = "대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다. " * 5
    rows = [{"prompt": "주권은?", "chosen": "국민에게 있습니다.", "rejected": "모릅니다."},
            {"prompt": "주권은 누구에게?", "chosen": "국민.", "rejected": long},  # only the rejected answer is long
            {"prompt": long * 2, "chosen": "네.", "rejected": "아니오."}]
    f = write_jsonl(tmp_path / "p.jsonl", rows)
    data = load(tmp_path, "dpo", tokenizer=tokenizer, data=[str(f)], max_length=48, validation_fraction=0.0)
    st = data.stats["datasets"]["data"]
    assert (st["truncated"], st["dropped_by_reason"], len(data.train)) == (1, {"prompt_too_long": 1}, 2)
    assert data.stats["max_length"] == 48


def test_no_tokenizer_no_length_counts(tmp_path):
    data = load(tmp_path, data=[str(write_jsonl(tmp_path / "a.jsonl", [chat("q", "a")]))], validation_fraction=0.0)
    assert data.stats["datasets"]["data"]["truncated"] is None and data.stats["totals"]["dropped"] is None


# ---------------------------------------------------------------------------------------------------------------------
# Recipe errors, input files, no torch
# ---------------------------------------------------------------------------------------------------------------------


def test_recipe_errors_name_the_key(tmp_path):
    good = str(write_jsonl(tmp_path / "a.jsonl", [chat("q", "a")]))
    with pytest.raises(RecipeError, match=r"sft\.datasets\[1\]\.inputs\[0\]: no file matches"):
        load(tmp_path, datasets=[{"name": "a", "inputs": [good]},
                                 {"name": "b", "inputs": [str(tmp_path / "no*.jsonl")]}])
    with pytest.raises(RecipeError, match=r"^sft\.data: set either sft\.datasets or sft\.data"):
        load(tmp_path, data=[good], datasets=[{"name": "a", "inputs": [good]}])
    with pytest.raises(RecipeError, match=r"sft\.datasets: empty"):
        load(tmp_path)
    with pytest.raises(RecipeError, match=r"dpo\.datasets\[0\]\.format: one of auto, preference for DPO, got 'alpaca'"):
        load(tmp_path, "dpo", datasets=[{"name": "a", "inputs": [good], "format": "alpaca"}])
    with pytest.raises(RecipeError, match=r"sft\.datasets\[1\]\.name: 'a' names two datasets"):
        load(tmp_path, datasets=[{"name": "a", "inputs": [good]}, {"name": "a", "inputs": [good]}])
    with pytest.raises(RecipeError, match=r"sft\.datasets\[1\]\.inputs: .*a\.jsonl also belongs to dataset 'a'"):
        load(tmp_path, datasets=[{"name": "a", "inputs": [good]}, {"name": "b", "inputs": [good]}])
    (tmp_path / "t.xlsx").write_text("Q,A\n")
    with pytest.raises(RecipeError, match=r"sft\.datasets\[0\]\.inputs: .*t\.xlsx is not a \.jsonl, \.json,"):
        load(tmp_path, datasets=[{"name": "a", "inputs": [str(tmp_path / "t.xlsx")]}])
    with pytest.raises(RecipeError, match=r"sft\.datasets\[0\]\.weight: must be > 0"):
        load(tmp_path, datasets=[{"name": "a", "inputs": [good], "weight": 0}])
    with pytest.raises(RecipeError, match=r"^sft_stages\.sft_domain\.data\[0\]: no file matches"):
        load_chat_data(sec(data=[str(tmp_path / "none.jsonl")]), "sft", "sft_stages.sft_domain", tmp_path, 0)


def test_no_training_record_left_names_key_and_files(tmp_path, tokenizer):
    f = write_jsonl(tmp_path / "long.jsonl", [{"Q": "긴 질문 " * 40, "A": "네."}])
    with pytest.raises(ChatDataError, match=r"^sft: no SFT training record left from \[.*long\.jsonl"):
        load(tmp_path, tokenizer=tokenizer, data=[str(f)], max_length=16, validation_fraction=0.0)
    assert [r["reason"] for r in read_rejects(tmp_path)] == ["prompt_too_long"]


def test_input_files_for_the_manifest(tmp_path):
    a = write_jsonl(tmp_path / "a1.jsonl", [chat("q", "a")])
    b = write_jsonl(tmp_path / "a2.jsonl", [chat("q", "a")])
    c = write_jsonl(tmp_path / "c.jsonl", [chat("q", "a")])
    s = sec(datasets=[{"name": "law", "inputs": [str(tmp_path / "a*.jsonl")], "license": "KOGL-1"},
                      {"name": "chat", "inputs": [str(c)], "license": "MIT"}])
    got = [(f.path, f.dataset, f.license, f.key) for f in input_files(s, "sft", "sft")]
    assert got == [(a, "law", "KOGL-1", "sft.datasets[0].inputs"), (b, "law", "KOGL-1", "sft.datasets[0].inputs"),
                   (c, "chat", "MIT", "sft.datasets[1].inputs")]
    assert [f.dataset for f in input_files(sec(data=[str(c)]), "sft", "sft")] == ["data"]


def test_chat_package_is_torch_free():
    code = ("import sys, kgov_train.chat, kgov_train.chat.load; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
