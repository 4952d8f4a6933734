"""The training mixture: per-source weights as target shares of the train tokens, realised as a document schedule.

Weights (the recipe's data.sources[].weight) are relative target shares of training tokens, as in Polyglot-ko v2's
1/3 Korean, 1/3 English, 1/3 code. With T the train split's tokens (the epoch size stays T), source s with
tokens_s gets the rate

    r_s = (w_s / sum w) * T / tokens_s            (> 1 upsampled, < 1 downsampled)

and each of its documents appears floor(r_s) times, plus once more for the documents that, taken in the order of a
hash of (id, floor(r_s)), still fit in the budget of frac(r_s) * tokens_s extra tokens. A budget rather than "hash
below frac(r_s)": the realised tokens then land within a few tokens of the target instead of within sampling noise
(a source of a few long documents would miss its share by several percent otherwise); the hash order keeps the
choice deterministic and unrelated to corpus order. r < 1 drops documents by the same rule.

The schedule is then ordered by a hash of (id, copy, seed): a seeded shuffle in which every copy's place depends
on nothing but its own id, and not on numpy's random streams (which may change between numpy versions).

train-mixture.npy is an int64 array of shape (2, n): row 0 the global train document number (files in index order,
documents in file order), row 1 the cumulative end of the schedule's token stream after that document. Rows, not
columns: a memory-mapped row is contiguous, so the loader binary-searches it in place (a column would be copied).
"""

from __future__ import annotations

import numpy as np

_SALT_EXTRA, _SALT_ORDER = 0x9E3779B97F4A7C15, 0xD1B54A32D192ED03


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser on uint64 arrays (wrapping arithmetic): a cheap, well-mixed 64-bit hash."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def keyed(hashes: np.ndarray, *salt: int) -> np.ndarray:
    """A hash of (id hash, salt...): one splitmix64 round per salt value."""
    x = np.asarray(hashes, np.uint64)
    for s in salt:
        x = splitmix64(x ^ splitmix64(np.uint64(s & 0xFFFFFFFFFFFFFFFF)))
    return x


def rates(tokens: dict[str, int], weights: dict[str, float]) -> dict[str, float]:
    """r_s for every source with train tokens; weights must cover them all (KeyError names the first missing)."""
    present = {s: t for s, t in tokens.items() if t > 0}
    missing = sorted(set(present) - set(weights))
    if missing:
        raise KeyError(missing[0])
    total_w = sum(float(weights[s]) for s in present)
    if total_w <= 0:
        raise ValueError(f"the sources with train tokens ({sorted(present)}) all weigh 0")
    total_t = sum(present.values())
    return {s: float(weights[s]) / total_w * total_t / t for s, t in present.items()}


def copies(lengths: np.ndarray, hashes: np.ndarray, rate: float) -> np.ndarray:
    """Copies per document for one source's documents at `rate`."""
    base = int(np.floor(rate))
    counts = np.full(len(lengths), base, np.int64)
    budget = (rate - base) * float(lengths.sum())  # tokens the extra copies should add
    if budget <= 0 or not len(lengths):
        return counts
    order = np.argsort(keyed(hashes, _SALT_EXTRA, base), kind="stable")
    cum = np.cumsum(lengths[order])
    m = int(np.searchsorted(cum, budget, side="right"))  # the longest prefix that fits, in one step
    counts[order[:m]] += 1
    budget -= float(cum[m - 1]) if m else 0.0
    smallest = int(lengths.min())
    for i in order[m + 1:]:  # then whatever still fits: the budget is now under one document
        if budget < smallest:
            break
        if lengths[i] <= budget:
            counts[i] += 1
            budget -= float(lengths[i])
    return counts


def schedule(lengths: np.ndarray, hashes: np.ndarray, counts: np.ndarray, seed: int) -> np.ndarray:
    """(2, n) int64: document numbers repeated by counts, ordered by hash of (id, copy, seed); cumulative ends."""
    docs = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    copy = np.arange(len(docs), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    keys = keyed(keyed(hashes[docs], _SALT_ORDER, seed) ^ copy.astype(np.uint64), _SALT_ORDER)
    docs = docs[np.argsort(keys, kind="stable")]
    return np.stack([docs, np.cumsum(lengths[docs])]) if len(docs) else np.zeros((2, 0), np.int64)
