"""Tiny local copies of the Korean benchmarks, laid out as a hub download writes them.

Each copy has the dataset's real repo path under the datasets folder (skt/kobest_v1, HAERAE-HUB/KMMLU,
HAERAE-HUB/HAE_RAE_BENCH, EunsuKim/CLIcK), its real file names, configs, splits and columns (from the dataset
cards and lm-eval's task configs), and a few hand-written Korean items per file: the items are ours, never the
benchmarks' own (their licences - KMMLU cc-by-nd, HAE-RAE cc-by-nc-nd - do not allow copying them here).

- KoBEST: README.md `configs:` per task, <task>/{train,validation,test}.jsonl (sentineg adds test_originated).
- KMMLU: README.md `configs:` per subject, data/<Subject>-{train,dev,test}.csv with question, answer (1-4), A-D,
  Category, Human Accuracy; the 45 subjects are read from lm-eval's own task files.
- HAE-RAE Bench: README.md `configs:` per task, data/HAERAE-Bench-v1-<CODE>.csv (query, answer "(A)".."(E)"), split
  test; the file names are HAE_RAE_BENCH_1.0's on the hub (the repo lm-eval names keeps its data out of view).
- CLIcK: no configs (the card has none), Dataset/<Culture|Language>/<Category>/<Category>_<source>.json (JSON arrays
  of {id, paragraph, question, choices, answer}); lm-eval splits it into categories by `id`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

KOBEST = "skt/kobest_v1"
KMMLU = "HAERAE-HUB/KMMLU"
HAERAE = "HAERAE-HUB/HAE_RAE_BENCH"
CLICK = "EunsuKim/CLIcK"
REPOS = {"kobest": KOBEST, "kmmlu": KMMLU, "haerae": HAERAE, "click": CLICK}


def _card(folder: Path, license: str, configs: list[dict] | None) -> None:
    meta: dict = {"license": license, "language": ["ko"]}
    if configs:
        meta["configs"] = configs
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text("---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False)
                                      + "---\n# tiny local copy for tests\n", encoding="utf-8")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


KOBEST_ROWS = {
    "boolq": [{"paragraph": "행정안전부는 정부조직법에 따라 국무회의의 서무를 맡는다. 장관은 국무위원이다.",
               "question": "행정안전부 장관은 국무위원인가?", "label": 1},
              {"paragraph": "주민등록증은 만 17세 이상의 주민에게 발급된다.",
               "question": "주민등록증은 만 10세에게 발급되는가?", "label": 0}],
    "copa": [{"premise": "민원 서류를 빠뜨리고 제출했다.", "question": "결과",
              "alternative_1": "보완 요청을 받았다.", "alternative_2": "바로 승인되었다.", "label": 0},
             {"premise": "구청 앞에 긴 줄이 생겼다.", "question": "원인",
              "alternative_1": "비가 그쳤다.", "alternative_2": "재난지원금 신청이 시작되었다.", "label": 1}],
    "hellaswag": [{"context": "담당자가 민원인의 신분증을 확인한다. 서류를 차례로 검토한다.",
                   "ending_1": "접수증을 출력해 건넨다.", "ending_2": "갑자기 바다로 뛰어든다.",
                   "ending_3": "서류를 먹는다.", "ending_4": "하늘을 난다.", "label": 0}],
    "sentineg": [{"sentence": "이번 행정 서비스는 전혀 불편하지 않았다.", "label": 1},
                 {"sentence": "안내가 친절하지 않아 실망했다.", "label": 0}],
    "wic": [{"word": "양분", "context_1": "토양에 양분이 풍부하다.", "context_2": "예산을 두 부서에 양분했다.",
             "label": 0}],
}


def kobest(root: Path) -> Path:
    folder = root / KOBEST
    configs = []
    for task, rows in KOBEST_ROWS.items():
        splits = ["train", "test", "validation"] + (["test_originated"] if task == "sentineg" else [])
        configs.append({"config_name": task,
                        "data_files": [{"split": s, "path": f"{task}/{s}.jsonl"} for s in splits]})
        for s in splits:
            _jsonl(folder / task / f"{s}.jsonl", rows)
    _card(folder, "cc-by-sa-4.0", configs)
    return folder


def kmmlu_subjects() -> list[str]:
    """The subjects (dataset_name) of lm-eval's kmmlu default tasks."""
    import lm_eval

    tasks = Path(lm_eval.__file__).parent / "tasks" / "kmmlu" / "default"
    names = []
    for path in sorted(tasks.glob("kmmlu_*.yaml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("dataset_name:"):
                names.append(line.split(":", 1)[1].strip())
    return names


KMMLU_HEADER = ["question", "answer", "A", "B", "C", "D", "Category", "Human Accuracy"]
KMMLU_ROWS = [["대한민국 헌법상 국회의원의 임기는?", 2, "2년", "4년", "5년", "6년", "", 0.6],
              ["지방자치단체의 장의 임기는?", 3, "2년", "3년", "4년", "5년", "", 0.5]]


def kmmlu(root: Path) -> Path:
    folder = root / KMMLU
    configs = []
    for subject in kmmlu_subjects():
        configs.append({"config_name": subject, "data_files": [
            {"split": s, "path": f"data/{subject}-{s}.csv"} for s in ("train", "dev", "test")]})
        for s in ("train", "dev", "test"):
            _csv(folder / "data" / f"{subject}-{s}.csv", KMMLU_HEADER,
                 [[q, a, *opts, subject, h] for q, a, *opts, _, h in KMMLU_ROWS])
    _card(folder, "cc-by-nd-4.0", configs)
    return folder


HAERAE_FILES = {"general_knowledge": "KGK", "history": "HI", "loan_words": "LW", "rare_words": "RW",
                "standard_nomenclature": "SN", "reading_comprehension": "RC"}
HAERAE_ROWS = [["다음 중 조선의 첫 번째 법전은?\n(A) 경국대전 (B) 경제육전 (C) 속대전 (D) 대전통편 (E) 대전회통\n정답:", "(B)"],
               ["'컴퓨터'를 가리키는 우리말 다듬은 말은?\n(A) 셈틀 (B) 누리 (C) 쪽 (D) 가람 (E) 뫼\n정답:", "(A)"]]


def haerae(root: Path) -> Path:
    folder = root / HAERAE
    configs = []
    for name, code in HAERAE_FILES.items():
        path = f"data/HAERAE-Bench-v1-{code}.csv"
        configs.append({"config_name": name, "data_files": [{"split": "test", "path": path}]})
        _csv(folder / path, ["query", "answer"], HAERAE_ROWS)
    _card(folder, "cc-by-nc-nd-4.0", configs)
    return folder


def _click_item(id_: str, paragraph: str = "") -> dict:
    choices = ["세종대왕", "이순신", "정약용", "김구"] + (["안중근"] if "CSAT" in id_ else [])
    return {"id": id_, "paragraph": paragraph, "question": "훈민정음을 창제한 왕은?", "choices": choices,
            "answer": "세종대왕"}


# (folder below Dataset/, file, ids): one or more items of every CLIcK category, with ids lm-eval's filters match
CLICK_FILES = [
    ("Culture/Economy", "Economy_KIIP.json", ["KIIP_economy_1", "KIIP_economy_2"]),
    ("Culture/Geography", "Geography_KIIP.json", ["KIIP_geography_1"]),
    ("Culture/History", "History_Kedu.json", ["Kedu_history_1"]),
    ("Culture/Pop Culture", "Pop Culture_KIIP.json", ["KIIP_popular_1"]),
    ("Culture/Law", "Law_KIIP.json", ["KIIP_law_1"]),
    ("Culture/Politics", "Politics_KIIP.json", ["KIIP_politics_1"]),
    ("Culture/Society", "Society_KIIP.json", ["KIIP_society_1"]),
    ("Culture/Tradition", "Tradition_KIIP.json", ["KIIP_tradition_1"]),
    ("Language/Textual", "Textual_CSAT.json", ["CSAT_korean_22_5", "CSAT_korean_23_12"]),
    ("Language/Grammar", "Grammar_CSAT.json", ["CSAT_korean_20_15"]),
    ("Language/Functional", "Functional_CSAT.json", ["CSAT_korean_20_5", "CSAT_korean_23_40"]),
]


def click(root: Path) -> Path:
    folder = root / CLICK
    for sub, name, ids in CLICK_FILES:
        path = folder / "Dataset" / sub / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([_click_item(i, "한글 창제에 관한 글이다." if n else "")
                                    for n, i in enumerate(ids)], ensure_ascii=False, indent=1), encoding="utf-8")
    _card(folder, "unknown", None)
    return folder


BUILDERS = {"kobest": kobest, "kmmlu": kmmlu, "haerae": haerae, "click": click}


def build(root: Path, families=tuple(BUILDERS)) -> Path:
    """The copies of the named benchmark families under root (the eval.datasets_dir); returns root."""
    for family in families:
        BUILDERS[family](root)
    return root
