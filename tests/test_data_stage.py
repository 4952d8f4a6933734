"""The data stage through the real chain and real datatrove: every input record is kept or
rejected with a reason and its location (<source>/<file>:<line>); NFC before exact dedup; the same
result for any number of tasks, wherever the corpus is mounted, and after a kill -9 in either pass."""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kgov_train.errors import RecipeError
from kgov_train.pipeline import validate
from kgov_train.manifest import Manifest
from kgov_train.errors import StageFailed
from kgov_train.pipeline import run_chain
from tests.helpers import compose_cfg

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "data"
CHATBOT = EXAMPLES / "ko-chatbot" / "ChatbotData.csv"
KO_LAW = "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고, 모든 권력은 국민으로부터 나온다."
KO_BILL = "공무원이 자녀를 양육하기 위하여 육아휴직을 할 수 있는 자녀의 나이를 상향한다."
SHORT = "네, 알겠습니다."  # 9 chars: kept with min_chars=5, and its copies are duplicates


def jl(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n"


@pytest.fixture
def corpus(tmp_path) -> dict[str, Path]:
    """One of each input kind, with every kind of malformed record. Expected outcome per line in comments."""
    d = tmp_path / "in"
    d.mkdir()
    f = {}
    f["a"] = d / "a.jsonl"
    f["a"].write_bytes(b"".join([
        jl({"id": "law-1", "text": KO_LAW, "year": 1987}),      # 1 kept
        b'{"id": "x", "text": "unterminated\n',                  # 2 bad_json
        b'{"text": "\xff\xfe \xea\xb0"}\n',                      # 3 invalid_utf8
        jl({"body": KO_BILL}),                                  # 4 missing_text_key
        jl({"text": "  \n "}),                                  # 5 empty_text
        jl({"text": 42}),                                       # 6 non_string_text
        jl({"text": "짧다"}),                                    # 7 too_short (2 < 5)
        b"\n",                                                  # 8 blank_line
        jl({"text": unicodedata.normalize("NFD", KO_LAW)}),     # 9 duplicate_exact of law-1 after NFC
        jl([1, 2]),                                             # 10 not_an_object
        jl({"id": "short-1", "text": SHORT}),                   # 11 kept
        jl({"text": "가" * 1500}),                              # 12 too_long with max_chars=1000
    ]))
    f["b"] = d / "b.jsonl.gz"
    with gzip.open(f["b"], "wb") as g:
        g.write(jl({"text": KO_BILL}) + jl({"text": SHORT}))    # 1 kept (id b.jsonl.gz:1), 2 duplicate of short-1
    f["c"] = d / "c.parquet"
    pq.write_table(pa.table({"id": ["p1", "p2", "p3"], "text": ["행정안전부 공고 제2024-1호 개인정보 처리방침", SHORT, None],
                             "agency": ["행안부", "행안부", "행안부"]}), f["c"])  # kept, duplicate, non_string_text
    f["d"] = d / "d.txt"
    f["d"].write_text("제1조 이 법은 지방공무원의 육아휴직에 관하여 규정한다.\n제2조 생략.\n", encoding="utf-8")  # kept
    f["e"] = d / "e.jsonl.gz"
    f["e"].write_bytes(b"this is not gzip at all")           # unreadable_file at e.jsonl.gz:1
    f["f"] = d / "f.jsonl.gz"                                 # truncated gzip: 2 lines read, then unreadable_file
    full = gzip.compress(b"".join(jl({"text": f"{KO_BILL} ({i}번째 사본)"}) for i in range(2000)))
    f["f"].write_bytes(full[: len(full) // 2])
    f["g"] = d / "g.parquet"
    f["g"].write_bytes(b"PAR1 garbage, no footer")           # unreadable_file
    return f


def run_data(tmp_path: Path, name: str, inputs: list[Path], *overrides: str):
    run_dir = tmp_path / name
    # The Korean blocks (PII, quality, near-dedup) have their own tests and would blur the
    # accounting checked here: these synthetic records are near-duplicates of each other.
    ov = ["recipe=smoke", f"run_dir={run_dir}", "stages=[data]", "data.min_chars=5",
          "data.pii.enabled=false", "data.quality.enabled=false", "data.dedup.near=false",
          "data.inputs=[" + ",".join(f"'{p}'" for p in inputs) + "]", *overrides]
    cfg = compose_cfg(ov)
    validate(cfg)
    run_chain(cfg, overrides=[])
    return Manifest.load(run_dir / "data"), run_dir / "data"


def loc(path: Path) -> str:
    """How records name an input of the corpus fixture: the smoke recipe's source, then the path below its root."""
    return f"ko-gov-sample/{path.name}"


def read_records(folder: Path) -> list[dict]:
    rows = []
    for f in sorted(folder.glob("*.jsonl*")):
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh]
    return rows


def test_every_record_is_kept_or_rejected_with_reason_and_location(tmp_path, corpus):
    m, out = run_data(tmp_path, "run", list(corpus.values()), "data.tasks=2", "data.workers=2", "data.max_chars=1000")
    assert m.status == "complete" and m.metrics["files_in"] == 7
    kept, rejected = read_records(out / "clean"), read_records(out / "rejected")
    met = m.metrics
    assert met["docs_in"] == met["docs_kept"] + met["docs_rejected"] == len(kept) + len(rejected)
    f_lines = len([r for r in rejected if r["location"].startswith(loc(corpus["f"]))])
    assert met["rejected_by_reason"] == {
        "bad_json": 1, "blank_line": 1, "duplicate_exact": 3, "empty_text": 1, "invalid_utf8": 1, "missing_text_key": 1,
        "non_string_text": 2, "not_an_object": 1, "too_long": 1, "too_short": 1, "unreadable_file": 3,
    }
    assert f_lines == 1  # the truncated gzip's unread tail is one record; its readable lines are kept
    n_f_kept = len([k for k in kept if k["metadata"]["file"] == corpus["f"].name])
    assert n_f_kept > 0 and met["docs_kept"] == 5 + n_f_kept
    assert met["chars_kept"] == sum(len(k["text"]) for k in kept)

    # clean records: corpus order, provenance, sha256 of the (NFC) text
    assert [k["id"] for k in kept[:5]] == ["law-1", "short-1", "ko-gov-sample/b.jsonl.gz:1", "p1",
                                           "ko-gov-sample/d.txt"]  # default ids: <source>/<file>[:<line>]
    for k in kept:
        md = k["metadata"]
        assert md["source"] == "ko-gov-sample" and md["license"].startswith("KR-Copyright")
        assert {"file", "line", "sha256"} <= set(md) and "reason" not in k
    assert kept[0]["metadata"]["extra"] == {"year": 1987}
    assert kept[3]["metadata"]["extra"] == {"agency": "행안부"}

    by_loc = {r["location"]: r for r in rejected}
    a = loc(corpus["a"])
    assert by_loc[f"{a}:2"]["reason"] == "bad_json" and "unterminated" in by_loc[f"{a}:2"]["text"]
    bad = by_loc[f"{a}:3"]
    assert bad["reason"] == "invalid_utf8" and "\ufffd" in bad["text"]
    assert base64.b64decode(bad["raw_base64"]) == b'{"text": "\xff\xfe \xea\xb0"}'  # nothing lost
    missing = by_loc[f"{a}:4"]
    assert missing["reason"] == "missing_text_key" and missing["metadata"]["extra"] == {"body": KO_BILL}
    assert by_loc[f"{a}:6"]["detail"] == "'text' is int"
    assert by_loc[f"{a}:7"]["reason"] == "too_short" and "min_chars=5" in by_loc[f"{a}:7"]["detail"]
    assert by_loc[f"{loc(corpus['e'])}:1"]["reason"] == "unreadable_file"
    assert by_loc[f"{loc(corpus['g'])}:1"]["reason"] == "unreadable_file"
    c3 = by_loc[f"{loc(corpus['c'])}:3"]
    assert c3["detail"] == "'text' is null" and c3["id"] == "p3"
    for r in rejected:
        assert r["reason"] and r["location"] and r["metadata"]["sha256"]


def test_nfc_makes_decomposed_hangul_an_exact_duplicate(tmp_path, corpus):
    m, out = run_data(tmp_path, "run", [corpus["a"]], "data.tasks=1", "data.workers=1")
    dup = next(r for r in read_records(out / "rejected") if r["location"] == "ko-gov-sample/a.jsonl:9")
    assert dup["reason"] == "duplicate_exact" and dup["duplicate_of"] == "law-1"
    assert dup["duplicate_of_location"] == "ko-gov-sample/a.jsonl:1"
    assert dup["text"] == KO_LAW  # composed syllables, not jamo
    assert m.metrics["normalized"]["nfc_changed"] == 1


def test_short_exact_duplicates_are_removed_keeping_the_first(tmp_path, corpus):
    _, out = run_data(tmp_path, "run", [corpus["c"], corpus["b"], corpus["a"]], "data.tasks=3", "data.workers=2")
    kept = [k for k in read_records(out / "clean") if k["text"] == SHORT]
    assert [k["id"] for k in kept] == ["p2"]  # c.parquet comes first in data.inputs
    dups = [r for r in read_records(out / "rejected") if r["text"] == SHORT]
    assert {r["location"] for r in dups} == {f"{loc(corpus['b'])}:2", f"{loc(corpus['a'])}:11"}
    assert all(r["reason"] == "duplicate_exact" and r["duplicate_of"] == "p2" for r in dups)


def test_same_bytes_whatever_the_tasks_and_workers(tmp_path, corpus):
    files = list(corpus.values())
    one, _ = run_data(tmp_path, "t1", files, "data.tasks=1", "data.workers=1")
    three, _ = run_data(tmp_path, "t3", files, "data.tasks=3", "data.workers=2")
    on_disk, _ = run_data(tmp_path, "disk", files, "data.tasks=3", "data.workers=2", "data.dedup.on_disk=true")
    drop = ("tasks", "workers", "split_seconds", "near_seconds", "merge_seconds", "docs_per_sec", "peak_rss_mb", "peak_anon_mb")
    for other in (three, on_disk):  # the exact-dedup state in sqlite decides as the one in memory
        assert one.outputs and [(o["path"], o["sha256"]) for o in one.outputs] == [
            (o["path"], o["sha256"]) for o in other.outputs]
        assert {k: v for k, v in one.metrics.items() if k not in drop} == {
            k: v for k, v in other.metrics.items() if k not in drop}
    assert one.metrics["rejected_by_reason"]["duplicate_exact"] == 3


def test_uncompressed_output_when_compression_is_null(tmp_path, corpus):
    m, out = run_data(tmp_path, "run", [corpus["d"]], "data.compression=null", "data.tasks=1", "data.workers=1")
    assert [o["path"] for o in m.outputs] == ["clean/000_00000.jsonl"]
    assert read_records(out / "clean")[0]["id"] == "ko-gov-sample/d.txt"


def test_nothing_kept_fails_with_the_reasons(tmp_path, corpus):
    with pytest.raises(StageFailed) as e:
        run_data(tmp_path, "run", [corpus["a"], corpus["d"]], "data.min_chars=100000", "data.tasks=1")
    msg = str(e.value)
    assert "data stage kept 0 of 13 documents" in msg and "too_short=6" in msg and "bad_json=1" in msg
    assert str(tmp_path / "run" / "data" / "rejected") in msg
    m = Manifest.load(tmp_path / "run" / "data")
    assert m.status == "failed" and "kept 0 of 13" in m.error
    assert len(read_records(tmp_path / "run" / "data" / "rejected")) == 13  # the evidence is on disk


def test_unsupported_input_type_is_a_recipe_error(tmp_path):
    (tmp_path / "notes.docx").write_text("a,b\n")
    with pytest.raises(RecipeError, match=r"data.inputs: unsupported file type: .*notes.docx"):
        run_data(tmp_path, "run", [tmp_path / "notes.docx"])


def test_cli_on_the_smoke_corpus(tmp_path):
    """From the real CLI, where datatrove forks its workers from inside kgov-train."""
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", "recipe=smoke", "stages=[data]",
                          f"run_dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    m = Manifest.load(tmp_path / "data")
    assert m.metrics["docs_in"] == 11 == m.metrics["docs_kept"] + m.metrics["docs_rejected"]
    assert m.metrics["workers"] == 2


def test_data_prep_never_imports_torch():
    code = ("import sys, data_prep.corpus, kgov_train.stages.data; "
            "assert 'torch' not in sys.modules, 'data_prep pulled in torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def tree_hashes(stage: Path) -> dict[str, str]:
    """sha256 of every file under clean/ and rejected/, by path below the stage folder."""
    return {str(f.relative_to(stage)): hashlib.sha256(f.read_bytes()).hexdigest()
            for sub in ("clean", "rejected") for f in sorted((stage / sub).rglob("*")) if f.is_file()}


def copy_real_corpus(root: Path) -> None:
    """The repo's real Korean samples, as a user might lay them out: source ko-gov in two subfolders, and
    the chatbot Q/A csv as a one-file source."""
    for f in sorted((EXAMPLES / "ko-gov-sample").glob("*.txt")):
        sub = root / "gov" / ("bills" if f.name.startswith("kobill") else "law")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, sub / f.name)
    (root / "chat").mkdir(parents=True)
    shutil.copy(CHATBOT, root / "chat" / CHATBOT.name)


def run_sources(run_dir: Path, root: Path):
    """Two sources, the smoke recipe's blocks otherwise (PII, near-dedup as configured there)."""
    sources = ("[{name: ko-gov, license: KOGL-1, inputs: ['%s/gov/**/*.txt']},"
               " {name: ko-chatbot, license: MIT, text_key: A, inputs: ['%s/chat/ChatbotData.csv']}]" % (root, root))
    cfg = compose_cfg(["recipe=smoke", f"run_dir={run_dir}", "stages=[data]", "data.min_chars=5", "data.tasks=2",
                       "data.workers=2", "data.inputs=[]", f"data.sources={sources}"])
    validate(cfg)
    run_chain(cfg, overrides=[])
    return Manifest.load(run_dir / "data"), run_dir / "data"


def test_same_bytes_wherever_the_corpus_is_mounted(tmp_path):
    """Portable provenance: the same corpus at two paths of different depth gives byte-identical clean/ and
    rejected/; records name source + path below the source's root, the manifest maps them to the files."""
    roots = [tmp_path / "a" / "corpus", tmp_path / "b" / "mnt" / "nfs-2" / "corpus"]
    runs = []
    for n, root in enumerate(roots):
        copy_real_corpus(root)
        runs.append(run_sources(tmp_path / f"run{n}", root))
    (m1, out1), (m2, out2) = runs
    assert m1.status == m2.status == "complete" and m1.metrics["docs_kept"] > 0
    assert m1.metrics["rejected_by_reason"].get("duplicate_exact", 0) > 0  # duplicate_of_location is exercised
    hashes = tree_hashes(out1)
    assert hashes and hashes == tree_hashes(out2)
    assert [(o["path"], o["sha256"]) for o in m1.outputs] == [(o["path"], o["sha256"]) for o in m2.outputs]

    files = {("ko-gov", f"{'bills' if f.name.startswith('kobill') else 'law'}/{f.name}")
             for f in (EXAMPLES / "ko-gov-sample").glob("*.txt")} | {("ko-chatbot", "ChatbotData.csv")}
    for m, root in zip((m1, m2), roots):  # the manifest: absolute path and sha256 per (source, file)
        assert {(i["source"], i["file"]) for i in m.inputs} == files
        for i in m.inputs:
            folder = "gov" if i["source"] == "ko-gov" else "chat"
            assert i["path"] == str(root / folder / i["file"]) and len(i["sha256"]) == 64
    by_file = {(i["source"], i["file"]): i for i in m1.inputs}
    seen = set()
    for sub in ("clean", "rejected"):
        for f in sorted((out1 / sub).glob("*.jsonl*")):
            raw = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
            assert str(tmp_path).encode() not in raw  # no absolute path anywhere in the outputs
            for line in raw.splitlines():
                r = json.loads(line)
                md = r["metadata"]
                key = (md["source"], md["file"])
                seen.add(key)
                assert by_file[key]["sha256"] == md["input_sha256"]  # an auditor's way back to the file
                if sub == "rejected":
                    assert r["location"] == f"{md['source']}/{md['file']}:{md['line']}"
                    if "duplicate_of_location" in r:
                        assert r["duplicate_of_location"].startswith(f"{md['source']}/")
                elif md["source"] == "ko-chatbot":
                    assert r["id"] == f"ko-chatbot/ChatbotData.csv:{md['line']}"  # default ids: the location
    assert seen == files


# ---------------------------------------------------------------- kill -9 and rerun

KILL_FILES, KILL_ROWS, KILL_TASKS = 4, 40_000, 2  # 160k short documents: each pass takes seconds on 2 cores
# Bytes a pass must have written before the kill: well inside it (split writes ~45 MB of work files, merge ~8 MB).
KILL_AFTER_BYTES = {"split": 8 << 20, "merge": 512 << 10}


@pytest.fixture(scope="module")
def kill_corpus(tmp_path_factory) -> Path:
    """Real chatbot questions and answers, varied and repeated into 4 jsonl files: about two thirds are exact
    duplicates of another line, so the merge pass has work too."""
    d = tmp_path_factory.mktemp("kill") / "in"
    d.mkdir()
    with open(CHATBOT, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    distinct = KILL_FILES * KILL_ROWS // 2
    for n in range(KILL_FILES):
        with open(d / f"part{n}.jsonl", "w", encoding="utf-8") as out:
            for i in range(KILL_ROWS):
                k = (i * 7919 + n * 104729) % distinct
                r, copy = rows[k % len(rows)], k // len(rows)
                out.write(json.dumps({"text": f"{r['Q']} {r['A']} ({copy}번 민원)"}, ensure_ascii=False) + "\n")
    return d


def data_cli(run_dir: Path, corpus: Path) -> list[str]:
    return [sys.executable, "-m", "kgov_train.cli", "recipe=smoke", "stages=[data]", f"run_dir={run_dir}",
            f"data.inputs=['{corpus}/*.jsonl']", "data.min_chars=5", f"data.tasks={KILL_TASKS}", "data.workers=2"]


def run_to_end(run_dir: Path, corpus: Path) -> float:
    t = time.time()
    res = subprocess.run(data_cli(run_dir, corpus), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert Manifest.load(run_dir / "data").status == "complete"
    return time.time() - t


@pytest.fixture(scope="module")
def never_killed(kill_corpus, tmp_path_factory) -> tuple[dict[str, str], float]:
    run_dir = tmp_path_factory.mktemp("never-killed")
    seconds = run_to_end(run_dir, kill_corpus)
    return tree_hashes(run_dir / "data"), seconds


def completed_tasks(stage: Path, name: str) -> int:
    """Tasks of pass `name` that datatrove marked complete (logs/<name>/completions/<rank>)."""
    folder = stage / "logs" / name / "completions"
    return len(list(folder.iterdir())) if folder.is_dir() else 0


def written(*folders: Path) -> int:
    """Bytes in the files directly inside the folders (a pass's partial output)."""
    return sum(f.stat().st_size for d in folders if d.is_dir() for f in d.iterdir() if f.is_file())


def running(stage: Path, name: str) -> bool:
    """Pass `name` is part way: its logs folder exists, it has written KILL_AFTER_BYTES, not all its tasks are
    complete. Only the split and merge folders are looked at, so a pass between them (near) changes nothing."""
    if name == "split":
        started = (stage / "logs" / "split").is_dir() and written(stage / "work") >= KILL_AFTER_BYTES[name]
        return started and completed_tasks(stage, "split") < KILL_TASKS
    outputs = written(stage / "clean", stage / "rejected")
    started = (stage / "logs" / "merge").is_dir() and outputs >= KILL_AFTER_BYTES[name]
    return started and completed_tasks(stage, "merge") < 1


@pytest.mark.slow
@pytest.mark.parametrize("pass_name", ["split", "merge"])
def test_kill_9_in_a_pass_then_rerun_gives_the_same_bytes(tmp_path, kill_corpus, never_killed, pass_name):
    """SIGKILL to the stage's whole process group (the CLI and datatrove's forked workers) while a pass runs
    leaves a `running` manifest, partial work/ and outputs, datatrove logs; the plain rerun gives the bytes of a
    run that was never killed."""
    expected, full_seconds = never_killed
    stage = tmp_path / "data"
    log = open(tmp_path / "killed.log", "wb")
    t0 = time.time()
    proc = subprocess.Popen(data_cli(tmp_path, kill_corpus), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # its own process group, workers included
    try:
        while not running(stage, pass_name):
            assert proc.poll() is None, (f"the stage ended (rc {proc.returncode}) before its {pass_name} pass was "
                                         f"seen running:\n" + (tmp_path / "killed.log").read_text()[-3000:])
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        killed_at = time.time() - t0
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    # killed inside the pass: not sealed, the pass unfinished, its leftovers on disk for the rerun to face
    assert Manifest.load(stage).status == "running"
    assert completed_tasks(stage, pass_name) < (KILL_TASKS if pass_name == "split" else 1)
    if pass_name == "merge":
        assert completed_tasks(stage, "split") == KILL_TASKS and any((stage / "work").glob("*.jsonl"))

    rerun_seconds = run_to_end(tmp_path, kill_corpus)
    assert tree_hashes(stage) == expected
    assert not (stage / "work").exists()
    print(f"\n{pass_name}: killed {killed_at:.1f}s after start; rerun {rerun_seconds:.1f}s; "
          f"uninterrupted run {full_seconds:.1f}s")
