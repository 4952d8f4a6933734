"""Shards stage: token files + index through the real pipeline, the reader's checks, the per-source split, parallel
and resumed writing, the training mixture."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from tokenizers import Tokenizer, models, pre_tokenizers

from data_prep.shards import read as R
from data_prep.shards.files import SplitWriter
from data_prep.hashing import id_hash
from data_prep.shards.split import validation_cutoff
from data_prep.shards.write import MixtureError, dtype_for, write_shards
from data_prep.tokenizer import specials as S
from data_prep.tokenizer.corpus import CorpusError
from tests.helpers import REPO_ROOT
from kgov_train.manifest import Manifest, hash_entries
from tests.test_tokenizer import corpus_docs, run_stages, seal_corpus

MAX_TOKENS = 6000  # small, so the smoke corpus rolls over into several files
SIZES = {"big": 240, "mid": 30, "tiny": 6}  # documents per source: very different sizes
WEIGHTS = {"big": 1.0, "mid": 1.0, "tiny": 1.0}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("shards") / "run"
    seal_corpus(run_dir, corpus_docs())
    run_stages(run_dir, "stages=[tokenizer,shards]", f"shards.max_tokens_per_file={MAX_TOKENS}",
               "shards.validation_fraction=0.2", "shards.batch_size=3")
    return run_dir


@pytest.fixture(scope="module")
def shards(run_dir) -> Path:
    return run_dir / "shards"


def mixed_docs(seed: int = 0) -> list[tuple[str, str, str]]:
    """(id, text, source): three sources of very different sizes, recombined from the smoke corpus, interleaved."""
    rng = random.Random(seed)
    paragraphs = [p for _, t in corpus_docs() for p in t.split("\n\n") if p.strip()]
    docs = [(f"{s}-{i}", "\n\n".join(rng.choices(paragraphs, k=rng.randint(1, 8))), s)
            for s, n in SIZES.items() for i in range(n)]
    rng.shuffle(docs)
    return docs


def write_clean(clean: Path, docs: list[tuple[str, str, str]], files: int = 3) -> None:
    """data/clean as the data stage leaves it: several files, gzip or not, sources interleaved."""
    clean.mkdir(parents=True)
    for k in range(files):
        lines = "".join(json.dumps({"id": i, "text": t, "metadata": {"source": s}}, ensure_ascii=False) + "\n"
                        for i, t, s in docs[k::files])
        name = f"{k:03d}_00000.jsonl" + (".gz" if k % 2 == 0 else "")
        (clean / name).write_bytes(gzip.compress(lines.encode(), mtime=0) if k % 2 == 0 else lines.encode())


@pytest.fixture(scope="module")
def mixed_clean(tmp_path_factory) -> Path:
    clean = tmp_path_factory.mktemp("mixed") / "clean"
    write_clean(clean, mixed_docs())
    return clean


def write(clean: Path, tok_dir: Path, out: Path, **kw) -> dict:
    args = dict(validation_fraction=0.05, min_validation_docs=2, max_tokens_per_file=20_000, batch_size=16,
                workers=2, weights=WEIGHTS, seed=0)
    return write_shards(clean, tok_dir, out, **{**args, **kw})


@pytest.fixture(scope="module")
def mixed(mixed_clean, run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mixed_shards")
    write(mixed_clean, run_dir / "tokenizer", out)
    return out


def same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir() if p.name != "manifest.json")
    assert names == sorted(p.name for p in b.iterdir() if p.name != "manifest.json")
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


# ---------------------------------------------------------------------------------------------------------------------
# The stage on the smoke corpus (one source, no weights in its data manifest: no mixture)
# ---------------------------------------------------------------------------------------------------------------------


def test_every_document_round_trips_in_corpus_order(run_dir, shards):
    tok = Tokenizer.from_file(str(run_dir / "tokenizer" / "tokenizer.json"))
    sp = spm.SentencePieceProcessor(model_file=str(run_dir / "tokenizer" / "tokenizer.model"))
    cutoff = R.load_index(shards)["split_rule"]["cutoffs"]["test"]["cutoff"]
    docs = corpus_docs()
    total = 0
    for split in ("train", "validation"):
        expected = [(i, t) for i, t in docs if (id_hash(i) < cutoff) == (split == "validation")]
        got = list(R.iter_documents(shards, split))
        assert len(got) == len(expected) > 0
        for (doc_id, text), tokens in zip(expected, got):
            assert tokens[0] == S.BOS_ID and tokens[-1] == S.EOS_ID
            body = tokens[1:-1].tolist()
            assert S.EOS_ID not in body and S.BOS_ID not in body  # literal "</s>" in a document stays text
            assert tok.decode(body, skip_special_tokens=False) == text, doc_id
            if not any(m in text for m in S.SPECIAL_TOKENS):
                assert body == sp.encode(text), doc_id  # the reference sentencepiece ids
        total += len(got)
    assert total == len(docs)


def test_index_and_manifest(run_dir, shards):
    index = R.load_index(shards)
    tok_json = run_dir / "tokenizer" / "tokenizer.json"
    assert index["format"] == "kgov-shards/2" and index["dtype"] == "uint16" and index["vocab_size"] == 2000
    assert (index["bos_token_id"], index["eos_token_id"], index["pad_token_id"]) == (1, 2, 3)  # the project's own
    assert index["document_layout"] == "<s> text </s>" and index["document_starts_with_bos"] is True
    assert index["tokenizer_sha256"] == hashlib.sha256(tok_json.read_bytes()).hexdigest()
    train, val = index["splits"]["train"], index["splits"]["validation"]
    assert len(train["files"]) > 2 and {f["input"] for f in train["files"]} == {"00000.jsonl.gz", "00001.jsonl"}
    assert train["files"][0]["path"] == "train-00000-000.bin"  # one set of files per input file, rolled over
    assert val["documents"] >= 1 and train["documents"] + val["documents"] == len(corpus_docs())
    for split in (train, val):
        assert split["tokens"] == sum(f["tokens"] for f in split["files"]) == split["sources"]["test"]["tokens"]
        for f in split["files"]:
            assert (shards / f["path"]).stat().st_size == 2 * f["tokens"]
            assert f["tokens"] <= MAX_TOKENS or f["documents"] == 1  # only a lone long document exceeds it
    arrays = R.open_split(shards, "train")
    assert [len(a) for a in arrays] == [f["tokens"] for f in train["files"]] and arrays[0].dtype == np.uint16
    assert index["mixture"]["schedule"] is None and index["mixture"]["sources"]["test"]["rate"] == 1.0
    assert R.open_mixture(shards, "train") is None and not (shards / "progress.json").exists()
    m = Manifest.load(shards)
    assert m.status == "complete" and {i["from_stage"] for i in m.inputs} == {"data", "tokenizer"}
    listed = {o["path"] for o in m.outputs}
    assert listed == {p.name for p in shards.iterdir()} - {"manifest.json"}  # every output, nothing else
    x = m.metrics
    assert x["train_tokens"] == train["tokens"] and x["validation_documents"] == val["documents"]
    assert x["dtype"] == "uint16" and x["tokens_per_sec"] > 0 and x["train_chars_per_token"] > 1
    assert x["workers"] == 2 and x["sources"]["test"]["rate"] == 1.0 and x["sources"]["test"]["sampling"] == "none"


def test_stage_mixes_by_the_data_manifest_weights(run_dir, mixed_clean, tmp_path):
    """The stage takes the weights from data/manifest.json (metrics.sources.<name>.weight)."""
    run2 = tmp_path / "run"
    data = run2 / "data"
    shutil.copytree(mixed_clean, data / "clean")
    weights = {"big": 2.0, "mid": 1.0, "tiny": 1.0}
    Manifest(stage="data", status="complete", outputs=hash_entries([data / "clean"], relative_to=data),
             metrics={"sources": {n: {"weight": w, "docs_kept": SIZES[n]} for n, w in weights.items()}}).save(data)
    shutil.copytree(run_dir / "tokenizer", run2 / "tokenizer")
    run_stages(run2, "stages=[shards]", "shards.workers=1")
    m = Manifest.load(run2 / "shards")
    assert "train-mixture.npy" in {o["path"] for o in m.outputs}
    src = m.metrics["sources"]
    assert src["big"]["target_share"] == 0.5 and src["big"]["sampling"] == "down" and src["tiny"]["sampling"] == "up"
    assert all(abs(s["realised_share"] - s["target_share"]) < 0.01 for s in src.values())
    assert m.metrics["workers"] == 1 and m.metrics["mixture_tokens"] > 0


# ---------------------------------------------------------------------------------------------------------------------
# Parallel, resumable writing
# ---------------------------------------------------------------------------------------------------------------------


def test_parallel_output_equals_single_worker_output(run_dir, mixed_clean, mixed, tmp_path):
    m = write(mixed_clean, run_dir / "tokenizer", tmp_path, workers=1, batch_size=5)
    same_files(mixed, tmp_path)  # 2 workers, batches of 16 vs 1 worker, batches of 5: the same bytes
    assert m["workers"] == 1 and m["resumed_input_files"] == 0


class Interrupted(Exception):
    pass


def test_resume_after_interruption_is_byte_identical(run_dir, mixed_clean, mixed, tmp_path):
    def stop(name):
        raise Interrupted(name)

    with pytest.raises(Interrupted, match="000_00000.jsonl.gz"):
        write(mixed_clean, run_dir / "tokenizer", tmp_path, on_file_done=stop)
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert list(progress["files"]) == ["000_00000.jsonl.gz"] and not (tmp_path / "index.json").exists()
    (tmp_path / "train-00001-000.bin").write_bytes(b"half of a file")  # as a killed run leaves its current file
    seen = []
    m = write(mixed_clean, run_dir / "tokenizer", tmp_path, workers=1, on_file_done=seen.append)
    assert seen == ["001_00000.jsonl", "002_00000.jsonl.gz"] and m["resumed_input_files"] == 1
    same_files(mixed, tmp_path)

    # other settings: nothing of the interrupted run is reused
    with pytest.raises(Interrupted):
        write(mixed_clean, run_dir / "tokenizer", tmp_path, on_file_done=stop)
    m = write(mixed_clean, run_dir / "tokenizer", tmp_path, max_tokens_per_file=5000)
    assert m["resumed_input_files"] == 0 and len(R.open_split(tmp_path, "train")) > len(R.open_split(mixed, "train"))


def test_resume_after_sigkill_is_byte_identical(run_dir, mixed_clean, mixed, tmp_path):
    """A writer killed outright (after its first input file, while its workers hold the next batches) leaves partial
    files; its workers exit on their own, and the next run finishes with the uninterrupted run's bytes."""
    code = (f"import time; from tests.test_shards import write; "
            f"write({str(mixed_clean)!r}, {str(run_dir / 'tokenizer')!r}, {str(tmp_path)!r}, "
            f"on_file_done=lambda name: time.sleep(60))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (tmp_path / "progress.json").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert (tmp_path / "progress.json").exists()
        workers = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert len(workers) == 2
    finally:
        proc.kill()
        proc.wait()
    def alive(pid: int) -> bool:  # a zombie waiting for a reaper is gone as far as work goes
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.time() + 10
    while any(map(alive, workers)) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, workers))  # no orphaned workers
    m = write(mixed_clean, run_dir / "tokenizer", tmp_path)
    assert m["resumed_input_files"] == 1
    same_files(mixed, tmp_path)


# ---------------------------------------------------------------------------------------------------------------------
# Per-source split and the mixture
# ---------------------------------------------------------------------------------------------------------------------


def test_validation_is_per_source(mixed):
    index = R.load_index(mixed)
    cutoffs = {n: c["cutoff"] for n, c in index["split_rule"]["cutoffs"].items()}
    for split in ("train", "validation"):
        for meta in R.document_meta(mixed, split):
            for source, h in zip(meta["source"], meta["hash"]):
                assert (int(h) < cutoffs[index["sources"][source]]) == (split == "validation")
    val = index["splits"]["validation"]["sources"]
    below = {n: sum(id_hash(i) < 0.05 * 2**64 for i, _, s in mixed_docs() if s == n) for n in SIZES}
    assert below["big"] > 2 and below["tiny"] == 0  # the hash rule alone would leave tiny without validation
    assert {n: val[n]["documents"] for n in SIZES} == {n: max(b, 2) for n, b in below.items()}  # >= 2 per source
    train = index["splits"]["train"]["sources"]
    assert {n: train[n]["documents"] + val[n]["documents"] for n in SIZES} == SIZES


def realised_shares(shards_dir: Path) -> dict[str, float]:
    """Token shares of the sources in the schedule file itself."""
    index = R.load_index(shards_dir)
    sched, ends = R.open_mixture(shards_dir, "train")
    lengths = np.concatenate([np.diff(e, prepend=0) for e in ends])
    source = np.concatenate([m["source"] for m in R.document_meta(shards_dir, "train")])
    tokens = np.bincount(source[sched[0]], weights=lengths[sched[0]], minlength=len(index["sources"]))
    assert tokens.sum() == sched[1, -1]
    return {n: tokens[i] / tokens.sum() for i, n in enumerate(index["sources"])}


@pytest.mark.parametrize("weights", [WEIGHTS, {"big": 0.2, "mid": 0.5, "tiny": 0.3, "absent": 4.0}])
def test_mixture_shares_match_the_weights(run_dir, mixed_clean, mixed, tmp_path, weights):
    out = mixed if weights is WEIGHTS else tmp_path
    if weights is not WEIGHTS:
        write(mixed_clean, run_dir / "tokenizer", out, weights=weights)
    index = R.load_index(out)
    mix, train = index["mixture"], index["splits"]["train"]
    total_w = sum(weights[n] for n in SIZES)
    shares = realised_shares(out)
    for n in SIZES:
        s = mix["sources"][n]
        assert s["target_share"] == pytest.approx(weights[n] / total_w, abs=1e-6)
        assert abs(shares[n] - s["target_share"]) < 0.01, (n, shares[n], s["target_share"])
        assert s["rate"] == pytest.approx(s["target_share"] * train["tokens"] / s["tokens"], rel=1e-5)
        assert s["sampling"] == ("up" if s["rate"] > 1 else "down")
    assert mix["sources"]["big"]["sampling"] == "down" and mix["sources"]["tiny"]["rate"] > 5
    assert abs(mix["tokens"] - train["tokens"]) < 0.01 * train["tokens"]  # the epoch keeps its size


def test_mixture_schedule_is_seeded_and_deterministic(run_dir, mixed_clean, mixed, tmp_path):
    sched = R.open_mixture(mixed, "train")[0]
    write(mixed_clean, run_dir / "tokenizer", tmp_path, seed=1)
    other = R.open_mixture(tmp_path, "train")[0]
    assert sorted(sched[0].tolist()) == sorted(other[0].tolist())  # the same copies, in another order
    assert sched[0].tolist() != other[0].tolist()
    counts = np.bincount(sched[0])  # tiny's documents repeat, some big ones are dropped
    assert counts.max() > 5 and (counts == 0).any()


def test_without_weights_the_stream_is_plain_concatenation(run_dir, mixed_clean, tmp_path):
    m = write(mixed_clean, run_dir / "tokenizer", tmp_path, weights=None)
    index = R.load_index(tmp_path)
    assert index["mixture"]["schedule"] is None and not (tmp_path / "train-mixture.npy").exists()
    assert {s["rate"] for s in index["mixture"]["sources"].values()} == {1.0}
    assert m["mixture_tokens"] == m["train_tokens"]


# ---------------------------------------------------------------------------------------------------------------------
# Split rule, dtypes, errors
# ---------------------------------------------------------------------------------------------------------------------


def test_split_is_by_id_hash_deterministic_and_keeps_minimums():
    ids = [f"doc-{i}" for i in range(200)]
    cut, n = validation_cutoff(ids, 0.1, 1)
    assert n == 200 and validation_cutoff(reversed(ids), 0.1, 1) == (cut, n)  # order does not matter
    val = {i for i in ids if id_hash(i) < cut}
    assert 5 < len(val) < 40
    cut0, _ = validation_cutoff(ids, 0.0, 3)  # fraction 0, yet 3 validation documents: the 3 smallest hashes
    assert sorted(ids, key=id_hash)[:3] == [i for i in sorted(ids, key=id_hash) if id_hash(i) < cut0]
    cut_all, _ = validation_cutoff(ids[:4], 0.0, 10)  # asks for more than exist: train keeps one
    assert sum(id_hash(i) < cut_all for i in ids[:4]) == 3
    assert validation_cutoff(["only"], 0.5, 1) == (0, 1)  # a single document trains
    assert sum(id_hash(i) < validation_cutoff(ids, 0.99, 1)[0] for i in ids) == 199


def word_tokenizer(tok_dir: Path, vocab_size: int) -> Path:
    """A word-level tokenizer.json: "w<i>" is id i (ids 0-3 the specials, named in tokenizer_config.json), words split
    at spaces."""
    vocab = {**{t: i for i, t in enumerate(S.SPECIAL_TOKENS[:4])}, **{f"w{i}": i for i in range(4, vocab_size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=S.UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(tok_dir / "tokenizer.json"))
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": S.BOS, "eos_token": S.EOS, "pad_token": S.PAD, "unk_token": S.UNK}), encoding="utf-8")
    return tok_dir


def test_dtype_choice_and_uint32_files(tmp_path):
    assert dtype_for(2000) == np.uint16 and dtype_for(65536) == np.uint16 and dtype_for(65537) == np.uint32
    tok_dir = word_tokenizer(tmp_path / "tok", 70_000)
    docs = [("a", "w70 w69999 w65536", "x"), ("b", "w5", "x"), ("c", " ".join(["w7"] * 12), "x")]
    write_clean(tmp_path / "clean", docs, files=1)
    write_shards(tmp_path / "clean", tok_dir, tmp_path / "out", validation_fraction=0.0, min_validation_docs=0,
                 max_tokens_per_file=10, batch_size=2, workers=1)
    index = R.load_index(tmp_path / "out")
    assert index["dtype"] == "uint32" and [f["documents"] for f in index["splits"]["train"]["files"]] == [2, 1]
    got = [d.tolist() for d in R.iter_documents(tmp_path / "out", "train")]
    assert got == [[1, 70, 69_999, 65_536, 2], [1, 5, 2], [1] + [7] * 12 + [2]]  # rolled over; the long one alone
    assert (tmp_path / "out" / "train-00000-000.bin").stat().st_size == 4 * 8


def test_split_writer_rolls_over_within_a_batch(tmp_path):
    w = SplitWriter(tmp_path, "train", np.dtype(np.uint16), max_tokens=5)
    w.add(np.arange(11), [2, 2, 1, 6])
    assert [(f["tokens"], f["documents"]) for f in w.close()] == [(5, 3), (6, 1)]
    assert np.load(tmp_path / "train-00000-000.idx.npy").tolist() == [2, 4, 5]
    assert np.fromfile(tmp_path / "train-00000-001.bin", "<u2").tolist() == [5, 6, 7, 8, 9, 10]


def test_check_tokenizer_refuses_another_tokenizer(run_dir, shards, tmp_path):
    R.check_tokenizer(shards, run_dir / "tokenizer")  # the right one passes
    other = tmp_path / "other"
    other.mkdir()
    data = json.loads((run_dir / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["merges"] = data["model"]["merges"][:-1]  # a different tokenizer
    (other / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    want = R.load_index(shards)["tokenizer_sha256"]
    got = hashlib.sha256((other / "tokenizer.json").read_bytes()).hexdigest()
    with pytest.raises(R.ShardsError) as e:
        R.check_tokenizer(shards, other)
    msg = str(e.value)
    assert str(shards) in msg and str(other / "tokenizer.json") in msg and want in msg and got in msg


def test_size_and_index_mismatches_are_errors(mixed, tmp_path):
    copy = tmp_path / "shards"
    shutil.copytree(mixed, copy)
    first = R.load_index(copy)["splits"]["train"]["files"][0]
    with open(copy / first["path"], "r+b") as f:
        f.truncate(first["tokens"] * 2 - 2)
    with pytest.raises(R.ShardsError, match=rf"{first['path']}: {first['tokens'] * 2 - 2} bytes, but .*index.json"):
        R.open_split(copy, "train")
    (copy / first["docs"]).write_bytes(b"\x93NUMPY")
    with pytest.raises(R.ShardsError, match=rf"{first['docs']}: not a readable .npy"):
        R.document_meta(copy, "train")
    np.save(copy / "train-mixture.npy", np.zeros((2, 3), np.int64))
    with pytest.raises(R.ShardsError, match=r"train-mixture.npy: shape \(2, 3\), but key 'mixture'"):
        R.open_mixture(copy, "train")
    with pytest.raises(R.ShardsError, match="no split 'test'"):
        R.open_split(copy, "test")
    (copy / "index.json").write_text(json.dumps({"format": "kgov-shards/1"}))
    with pytest.raises(R.ShardsError, match=r"index.json: key 'format' is 'kgov-shards/1'.*rerun the shards stage"):
        R.load_index(copy)
    with pytest.raises(R.ShardsError, match="run the shards stage first"):
        R.load_index(tmp_path)


def test_writer_errors_name_the_file_and_key(run_dir, mixed_clean, tmp_path):
    with pytest.raises(MixtureError, match=r"source 'tiny' \(key 'metadata.source'.*data.sources\[\].weight"):
        write(mixed_clean, run_dir / "tokenizer", tmp_path / "a", weights={"big": 1.0, "mid": 1.0})
    with pytest.raises(MixtureError, match=r"data.sources\[\].weight: must be >= 0"):
        write(mixed_clean, run_dir / "tokenizer", tmp_path / "b", weights={**WEIGHTS, "mid": -1.0})
    clean = tmp_path / "clean"
    write_clean(clean, [("a", "글", "x"), ("b", "글", "x")], files=1)
    with open(clean / "000_00000.jsonl.gz", "ab") as f:
        f.write(gzip.compress(b'{"id": "c", "txt": "oops"}\n'))  # a second gzip member: line 3
    with pytest.raises(CorpusError, match=r"000_00000.jsonl.gz:3: a document record needs keys 'id' and 'text'"):
        write(clean, run_dir / "tokenizer", tmp_path / "c", weights=None)
    (clean / "000_00000.jsonl.gz").unlink()
    (clean / "x.jsonl").write_text('{"id": "a", "text": "글", "metadata": {"source": 7}}\n')
    with pytest.raises(CorpusError, match=r"x.jsonl:1: key 'metadata.source' is int"):
        write(clean, run_dir / "tokenizer", tmp_path / "d", weights=None)
