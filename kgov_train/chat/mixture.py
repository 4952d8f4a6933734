"""Validation split, per-dataset caps and the weighted training mixture; every choice by a hash, none by file order.

Validation. A record's place is decided by a hash of its prompt (the turns before the first answer, system turns
excluded): u in [0, 1). Records with u < validation_fraction are held out, so the split depends on neither the order
of the files nor the cap, the weights or the seed, and records that share a prompt (duplicates, several answers or
preference pairs to one question) all land on the same side. When more than max_validation_records qualify, the
ones with the smallest u are kept, whole prompts at a time; the rest go back to training. Validation records never
appear in training.

Cap. max_records keeps at most that many of a dataset's training records: the first in the order of a hash of
(record, seed), i.e. a seeded sample that does not depend on file order.

Mixture. Weights are relative shares of the training records, the rule of the shards stage's token mixture: the
training set keeps its size N (the datasets' records after the validation split, the caps and the length checks, each
counted once) and dataset d gets n_d' = w_d / sum(w) * N records (largest-remainder rounding, so they add up to N).
Its rate r_d = n_d' / n_d: every record appears floor(r_d) times, plus once more for the first of its records in a
seeded hash order until n_d' is reached; r_d < 1 is a seeded sample without repeats. Equal weights (the default)
give every dataset the same number of records: a small dataset beside a large one is repeated many times (the log
warns from MANY_REPEATS up). The training list is ordered by a hash of (record, copy, seed): deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from kgov_train.chat.readers import Origin

MANY_REPEATS = 4.0


def canonical(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def digest(obj: Any) -> bytes:
    return hashlib.blake2b(canonical(obj).encode("utf-8"), digest_size=16).digest()


def unit(d: bytes) -> float:
    """A digest as a number in [0, 1)."""
    return int.from_bytes(d[:8], "big") / 2.0 ** 64


def seeded(rkey: bytes, seed: int, tag: str, copy: int = 0) -> bytes:
    return hashlib.blake2b(rkey + f"|{tag}|{seed}|{copy}".encode(), digest_size=8).digest()


def prompt_part(rec: dict, kind: str) -> list[dict]:
    """The turns that decide a record's validation place: the prompt without system turns."""
    if kind == "dpo":
        return [m for m in rec["prompt"] if m["role"] != "system"]
    msgs = rec["messages"]
    first = next(i for i, m in enumerate(msgs) if m["role"] == "assistant")
    return [m for m in msgs[:first] if m["role"] != "system"]


@dataclass(slots=True)
class Item:
    """One valid record (in TRL's form, system prompt added), where it came from and its hashes."""

    record: dict
    origin: Origin
    group: bytes  # hash of the prompt part: the validation split
    rkey: bytes  # hash of the whole record before the system prompt: caps and mixture order

    @classmethod
    def make(cls, record: dict, origin: Origin, kind: str, before_system: dict) -> "Item":
        return cls(record, origin, digest(prompt_part(before_system, kind)), digest(before_system))

    @property
    def u(self) -> float:
        return unit(self.group)


def split_validation(pools: list[list[Item]], fraction: float,
                     max_records: int) -> tuple[list[list[Item]], list[list[Item]]]:
    """(training pools, validation pools), one of each per dataset."""
    if fraction <= 0 or max_records <= 0:
        return [list(p) for p in pools], [[] for _ in pools]
    candidates = sorted((it for pool in pools for it in pool if it.u < fraction), key=lambda it: (it.group, it.rkey))
    held: set[int] = set()
    i = 0
    while i < len(candidates):
        j = i
        while j < len(candidates) and candidates[j].group == candidates[i].group:
            j += 1
        if len(held) + (j - i) > max_records:
            break
        held.update(id(it) for it in candidates[i:j])
        i = j
    train = [[it for it in pool if id(it) not in held] for pool in pools]
    validation = [sorted((it for it in pool if id(it) in held), key=lambda it: (it.group, it.rkey)) for pool in pools]
    return train, validation


def cap(pool: list[Item], max_records: int | None, seed: int) -> list[Item]:
    """At most max_records of the pool: a seeded sample, independent of the pool's order."""
    if max_records is None or len(pool) <= max_records:
        return pool
    return sorted(pool, key=lambda it: seeded(it.rkey, seed, "cap"))[:max_records]


def apportion(sizes: list[int], weights: list[float]) -> list[int]:
    """Records per dataset: shares w / sum(w) of sum(sizes) over the datasets that have records (largest remainder)."""
    total = sum(sizes)
    w_total = sum(w for w, n in zip(weights, sizes) if n > 0)
    if total == 0 or w_total <= 0:
        return [0] * len(sizes)
    targets = [w / w_total * total if n > 0 else 0.0 for w, n in zip(weights, sizes)]
    counts = [math.floor(t) for t in targets]
    rest = total - sum(counts)
    for i in sorted(range(len(sizes)), key=lambda i: (-(targets[i] - counts[i]), i))[:rest]:
        counts[i] += 1
    return counts


def mix(pools: list[list[Item]], weights: list[float], seed: int) -> tuple[list[Item], list[int]]:
    """The training list (copies included) and the number of records each dataset got."""
    counts = apportion([len(p) for p in pools], weights)
    keyed: list[tuple[bytes, int, int, Item]] = []
    for d, (pool, count) in enumerate(zip(pools, counts)):
        if not pool:
            continue
        full, extra = divmod(count, len(pool))
        order = sorted(range(len(pool)), key=lambda i: seeded(pool[i].rkey, seed, "mix"))
        for rank, i in enumerate(order):
            for copy in range(full + (rank < extra)):
                keyed.append((seeded(pool[i].rkey, seed, "order", copy), d, i, pool[i]))
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed], counts
