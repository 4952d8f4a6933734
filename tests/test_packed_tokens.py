"""The pretraining loader: the mixed token stream, packed windows, rank shards and exact resume."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from data_prep.shards import read as R
from data_prep.shards.stream import TokenStream, count_samples, permute, sample_indices
from data_prep.shards.write import write_shards
from tests.test_shards import word_tokenizer, write_clean

SEQ = 16


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Three sources of different sizes; document k of a source is "w<k> w<k> ..." so tokens name their document."""
    tmp = tmp_path_factory.mktemp("packed")
    rng = random.Random(3)
    docs = [(f"{s}-{k}", " ".join([f"w{base + k}"] * rng.randint(1, 30)), s)
            for s, n, base in (("a", 120, 100), ("b", 25, 300), ("c", 5, 400)) for k in range(n)]
    rng.shuffle(docs)
    write_clean(tmp / "clean", docs, files=3)
    write_shards(tmp / "clean", word_tokenizer(tmp / "tok", 500), tmp / "shards", validation_fraction=0.1,
                 min_validation_docs=1, max_tokens_per_file=300, batch_size=8, workers=1,
                 weights={"a": 1.0, "b": 2.0, "c": 1.0}, seed=5)
    return tmp / "shards"


def test_stream_is_the_documents_in_schedule_order(shards):
    docs = list(R.iter_documents(shards, "train"))
    sched, ends = R.open_mixture(shards, "train")
    expected = np.concatenate([docs[g] for g in sched[0]])
    stream = TokenStream(R.open_split(shards, "train"), (sched, ends))
    assert stream.total_tokens == len(expected) == R.load_index(shards)["mixture"]["tokens"]
    assert stream.window(0, len(expected)).tolist() == expected.tolist()
    for start in (0, 1, 17, len(expected) - 40):  # windows across documents and files
        assert stream.window(start, 40).tolist() == expected[start:start + 40].tolist()
    with pytest.raises(IndexError):
        stream.window(len(expected) - 3, 4)
    plain = TokenStream(R.open_split(shards, "train"))  # no schedule: the files back to back, corpus order
    assert plain.window(0, plain.total_tokens).tolist() == np.concatenate(docs).tolist()
    assert R.open_mixture(shards, "validation") is None  # validation is never mixed


def test_packed_tokens_windows_and_pickling(shards):
    from kgov_train.train.data import PackedTokens

    ds = PackedTokens(shards, "train", SEQ)
    stream = TokenStream(R.open_split(shards, "train"), R.open_mixture(shards, "train"))
    assert len(ds) == stream.total_tokens // SEQ and ds.total_tokens == stream.total_tokens
    for i in (0, 5, len(ds) - 1):
        item = ds[i]
        assert item["input_ids"].tolist() == stream.window(i * SEQ, SEQ).tolist() == item["labels"].tolist()
    again = pickle.loads(pickle.dumps(ds))  # dataloader workers reopen the memmaps
    assert again[3]["input_ids"].tolist() == ds[3]["input_ids"].tolist()
    plain = PackedTokens(shards, "train", SEQ, mixed=False)
    assert plain.total_tokens == R.load_index(shards)["splits"]["train"]["tokens"]
    val_tokens = R.load_index(shards)["splits"]["validation"]["tokens"]
    assert PackedTokens(shards, "validation", SEQ).total_tokens == val_tokens


def test_permutation_is_a_bijection():
    for n in (1, 2, 3, 7, 64, 1000):
        for key in (0, 12345):
            assert sorted(permute(i, n, key) for i in range(n)) == list(range(n))
    assert [permute(i, 1000, 1) for i in range(10)] != [permute(i, 1000, 2) for i in range(10)]


@pytest.mark.parametrize("seed", [None, 11])
def test_resume_at_any_sample_gives_the_uninterrupted_run(seed):
    n, epochs = 37, 2
    full = list(sample_indices(n, seed=seed, epochs=epochs))
    assert len(full) == n * epochs and sorted(full[:n]) == list(range(n)) == sorted(full[n:])
    if seed is not None:
        assert full[:n] != full[n:]  # each epoch its own order
    for k in (0, 1, 36, 37, 50):
        assert full[:k] + list(sample_indices(n, seed=seed, epochs=epochs, start_sample=k)) == full
    for world in (2, 3):
        shares = [list(sample_indices(n, rank=r, world_size=world, seed=seed, epochs=epochs)) for r in range(world)]
        for r in range(world):
            assert shares[r] == full[r::world]  # disjoint, deterministic: global sample g goes to rank g % world
            assert count_samples(n, rank=r, world_size=world, epochs=epochs) == len(shares[r])
            for k in (5, 40):  # resuming after k global samples
                rest = list(sample_indices(n, rank=r, world_size=world, seed=seed, epochs=epochs, start_sample=k))
                assert rest == [full[g] for g in range(k, n * epochs) if g % world == r]


def test_sampler_resumes_packed_items_exactly(shards):
    import torch
    from transformers import default_data_collator

    from kgov_train.train.data import PackedTokens

    ds = PackedTokens(shards, "train", SEQ)
    uninterrupted = [ds[i]["input_ids"].tolist() for i in ds.sampler(seed=3)]
    k = 7
    first = [ds[i]["input_ids"].tolist() for i in list(ds.sampler(seed=3))[:k]]
    fresh = PackedTokens(shards, "train", SEQ)  # a new process after a restart
    rest = [fresh[i]["input_ids"].tolist() for i in fresh.sampler(seed=3, start_sample=k)]
    assert first + rest == uninterrupted and len(uninterrupted) == len(ds)
    ranks = [list(ds.sampler(rank=r, world_size=2, seed=3)) for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1]) and sorted(ranks[0] + ranks[1]) == list(range(len(ds)))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=ds.sampler(rank=1, world_size=2, seed=3),
                                         collate_fn=default_data_collator)
    batches = list(loader)
    assert len(ds.sampler(rank=1, world_size=2, seed=3)) == len(ranks[1]) == sum(len(b["input_ids"]) for b in batches)
    assert batches[0]["input_ids"][0].tolist() == ds[ranks[1][0]]["input_ids"].tolist()
