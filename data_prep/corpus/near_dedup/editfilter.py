"""The candidate filter of short keys: every pair of keys within E = `short_edits` character edits
shares a piece (the partition filter of Pass-Join, Li et al., VLDB 2011).

An indexed key of length l is cut into E+1 pieces, E the most edits any key is allowed against it
(settings.allowed_edits of the longer key, at most short_edits). If a later key of length L is within
E edits of it, at least one piece is untouched by the edits and occurs in the later key, shifted by d, where
|d| + |L - l - d| <= E (the edits before the piece shift it by d, the ones after it make up the rest
of the length difference). So the later key probes, for every length l within E of its own, every
piece position of l shifted by each such d: about 30 probes per key at E = 2, whatever the corpus.
A probe equals a piece only when the characters, the indexed length and the piece number agree:
all three go into its hash. Unlike n-gram LSH this misses no pair within reach, however short; the
edit distance itself is then computed on the candidates (rapidfuzz, see rules.py).

Probe and piece positions depend on the lengths only, so they are tables built once and expanded
over a batch with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_prep.corpus.near_dedup.settings import DedupSettings
from data_prep.corpus.near_dedup.textkey import U64, WindowHasher, _mix

_MASK = (1 << 64) - 1


def pieces(length: int, edits: int) -> list[tuple[int, int]]:
    """(start, length) of the edits+1 pieces of a key: as even as possible, the longer ones last."""
    n = edits + 1
    base, extra = divmod(length, n)
    out, start = [], 0
    for i in range(n):
        size = base + (1 if i >= n - extra else 0)
        out.append((start, size))
        start += size
    return out


def _tag(indexed_length: int, piece: int) -> int:
    return (indexed_length * 0x9E3779B97F4A7C15 + (piece + 1) * 0xC2B2AE3D27D4EB4F + 0x243F6A8885A308D3) & _MASK


@dataclass
class _Table:
    """Rows (start in the key, length, tag) for each key length: rows off[L]..off[L]+cnt[L]."""

    off: np.ndarray
    cnt: np.ndarray
    start: np.ndarray
    size: np.ndarray
    tag: np.ndarray

    @classmethod
    def build(cls, rows_of: dict[int, list[tuple[int, int, int]]], max_len: int) -> "_Table":
        off, cnt, start, size, tag = [], [], [], [], []
        for length in range(max_len + 1):
            rows = rows_of.get(length, [])
            off.append(len(start))
            cnt.append(len(rows))
            for s, n, t in rows:
                start.append(s)
                size.append(n)
                tag.append(t)
        return cls(np.array(off, np.int64), np.array(cnt, np.int64), np.array(start, np.int64),
                   np.array(size, np.int64), np.array(tag, dtype=U64))

    def expand(self, hasher: WindowHasher, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keys, batch row of each key) for the listed batch rows."""
        lengths = hasher.k.lengths[docs]
        cnt = self.cnt[np.minimum(lengths, self.cnt.size - 1)] * (lengths < self.cnt.size)
        total = int(cnt.sum())
        if total == 0:
            return np.empty(0, U64), np.empty(0, np.int64)
        rep = np.repeat(np.arange(docs.size), cnt)
        rows = self.off[lengths[rep]] + np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        h = hasher.spans(hasher.k.starts[docs][rep] + self.start[rows], self.size[rows])
        return _mix(h ^ self.tag[rows]), docs[rep]


class EditFilter:
    def __init__(self, settings: DedupSettings):
        lo, hi = settings.short_min, settings.short_chars
        self.indexed = (lo, hi)  # key lengths that are indexed by their pieces
        # Pieces per indexed length l: one more than the most edits any key within reach of l is allowed
        # (1 below 8 characters at the defaults: halves, not thirds, so no piece is a single character).
        reach = {l: max((a for L in range(1, hi + settings.short_edits + 1)
                         for a in [int(settings.allowed_edits(max(L, l)))] if abs(L - l) <= a), default=0)
                 for l in range(lo, hi + 1)}
        self.edits = {l: e for l, e in reach.items() if e > 0}
        index_rows = {l: [(s, n, _tag(l, i)) for i, (s, n) in enumerate(pieces(l, e))] for l, e in self.edits.items()}
        probe_rows: dict[int, list[tuple[int, int, int]]] = {}
        for l, e in self.edits.items():
            for L in range(max(1, l - e), l + e + 1):
                delta = L - l
                for i, (s, n) in enumerate(pieces(l, e)):
                    for d in range(-e, e + 1):
                        q = s + d
                        if abs(d) + abs(delta - d) <= e and 0 <= q <= L - n:
                            probe_rows.setdefault(L, []).append((q, n, _tag(l, i)))
        top = hi + settings.short_edits if self.edits else 0
        self.longest = top  # the longest key that can be within reach of an indexed one
        self.index_table = _Table.build(index_rows, top)
        self.probe_table = _Table.build(probe_rows, top)

    def index_keys(self, hasher: WindowHasher, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.index_table.expand(hasher, docs)

    def probe_keys(self, hasher: WindowHasher, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.probe_table.expand(hasher, docs)
