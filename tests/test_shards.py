"""Shards stage: token files + index through the real pipeline, the reader's checks, the split."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from tokenizers import Tokenizer

from data_prep.shards import read as R
from data_prep.shards.split import id_hash, validation_cutoff
from data_prep.shards.write import SplitWriter, dtype_for, write_shards
from data_prep.tokenizer import specials as S
from kgov_train.manifest import Manifest
from tests.test_tokenizer import corpus_docs, run_stages, seal_corpus

MAX_TOKENS = 6000  # small, so the smoke corpus rolls over into several files


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


def test_every_document_round_trips_in_corpus_order(run_dir, shards):
    tok = Tokenizer.from_file(str(run_dir / "tokenizer" / "tokenizer.json"))
    sp = spm.SentencePieceProcessor(model_file=str(run_dir / "tokenizer" / "tokenizer.model"))
    cutoff = R.load_index(shards)["split_rule"]["cutoff"]
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
    assert index["format"] == "kgov-shards/1" and index["dtype"] == "uint16" and index["vocab_size"] == 2000
    assert (index["bos_token_id"], index["eos_token_id"], index["pad_token_id"]) == (1, 2, 3)
    assert index["tokenizer_sha256"] == hashlib.sha256(tok_json.read_bytes()).hexdigest()
    train, val = index["splits"]["train"], index["splits"]["validation"]
    assert len(train["files"]) > 1  # rolled over
    assert val["documents"] >= 1 and train["documents"] + val["documents"] == len(corpus_docs())
    for split in (train, val):
        assert split["tokens"] == sum(f["tokens"] for f in split["files"])
        for f in split["files"]:
            assert (shards / f["path"]).stat().st_size == 2 * f["tokens"]
            assert f["tokens"] <= MAX_TOKENS or f["documents"] == 1  # only a lone long document exceeds it
    arrays = R.open_split(shards, "train")
    assert [len(a) for a in arrays] == [f["tokens"] for f in train["files"]] and arrays[0].dtype == np.uint16
    m = Manifest.load(shards)
    assert m.status == "complete" and {i["from_stage"] for i in m.inputs} == {"data", "tokenizer"}
    listed = {o["path"] for o in m.outputs}
    assert "index.json" in listed and all(f["path"] in listed and f["index"] in listed
                                          for s in (train, val) for f in s["files"])
    x = m.metrics
    assert x["train_tokens"] == train["tokens"] and x["validation_documents"] == val["documents"]
    assert x["dtype"] == "uint16" and x["tokens_per_sec"] > 0 and x["train_chars_per_token"] > 1


def test_rerun_is_byte_identical(run_dir, shards, tmp_path):
    write_shards(run_dir / "data" / "clean", run_dir / "tokenizer", tmp_path, validation_fraction=0.2,
                 min_validation_docs=1, max_tokens_per_file=MAX_TOKENS, batch_size=64)
    for f in sorted(p.name for p in shards.iterdir() if p.name != "manifest.json"):
        assert (tmp_path / f).read_bytes() == (shards / f).read_bytes(), f


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


def test_dtype_choice_and_uint32_files(tmp_path):
    assert dtype_for(2000) == np.uint16 and dtype_for(65536) == np.uint16 and dtype_for(65537) == np.uint32
    w = SplitWriter(tmp_path, "train", dtype_for(100_000), max_tokens=10)
    docs = [np.array([1, 70_000, 99_999, 2]), np.array([1, 65_536, 2]), np.array([1] + [5] * 12 + [2])]
    for d in docs:
        w.add(d)
    split = w.close()
    assert [f["documents"] for f in split["files"]] == [2, 1]  # rolled over; the long one alone
    index = {"format": "kgov-shards/1", "dtype": "uint32", "vocab_size": 100_000, "bos_token_id": 1,
             "eos_token_id": 2, "pad_token_id": 3, "tokenizer_sha256": "x", "splits": {"train": split}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    assert [d.tolist() for d in R.iter_documents(tmp_path, "train")] == [d.tolist() for d in docs]
    assert (tmp_path / "train-00000.bin").stat().st_size == 4 * 7


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


def test_size_and_index_mismatches_are_errors(shards, tmp_path):
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    first = R.load_index(copy)["splits"]["train"]["files"][0]
    with open(copy / first["path"], "r+b") as f:
        f.truncate(first["tokens"] * 2 - 2)
    with pytest.raises(R.ShardsError, match=rf"{first['path']}: {first['tokens'] * 2 - 2} bytes, but .*index.json"):
        R.open_split(copy, "train")
    with pytest.raises(R.ShardsError, match="no split 'test'"):
        R.open_split(copy, "test")
    (copy / "index.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(R.ShardsError, match=r"index.json: key 'format'"):
        R.load_index(copy)
    with pytest.raises(R.ShardsError, match="run the shards stage first"):
        R.load_index(tmp_path)
