"""What a pretraining run reads, and in which order. Torch-free (kgov_train.train.data.PackedTokens wraps it).

    stream = TokenStream(read.open_split(d, "train"), read.open_mixture(d, "train"))
    stream.window(start, length)              # tokens [start, start + length) of the stream, int64
    for i in sample_indices(len(stream) // seq_len, rank=r, world_size=w, seed=s, start_sample=k): ...

The stream is the split's files back to back, or, with a mixture schedule (train), its documents in schedule order:
documents back to back either way, so a window may span documents. Memory per window is O(1) beyond the
schedule, which stays memory-mapped: a window costs one binary search and one copy per document it touches.

Sample order: global sample g (counting over all ranks, epoch after epoch) is window g mod n of epoch g // n,
permuted within the epoch by a keyed Feistel network when a seed is given (O(1) memory, unlike a stored
permutation); rank r reads the samples g = r, r + world_size, ... So ranks get disjoint, deterministic shares, and a
run that stopped after k global samples continues with start_sample=k exactly where it left off, on any world size.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

_M = (1 << 64) - 1


class TokenStream:
    def __init__(self, arrays: Sequence[np.ndarray], mixture: tuple[np.ndarray, list[np.ndarray]] | None = None):
        self.arrays = list(arrays)
        if mixture is None:  # segment j is file j
            self._sched = None
            self._ends = np.cumsum([len(a) for a in self.arrays], dtype=np.int64)
        else:  # segment j is the document at schedule position j
            self._sched, self._doc_ends = mixture
            self._ends = self._sched[1]
            self._file_docs = np.cumsum([len(e) for e in self._doc_ends], dtype=np.int64)
        self.total_tokens = int(self._ends[-1]) if len(self._ends) else 0

    def __len__(self) -> int:
        return self.total_tokens

    def _segment(self, j: int) -> tuple[np.ndarray, int, int]:
        """(array, lo, hi): segment j is array[lo:hi]."""
        if self._sched is None:
            return self.arrays[j], 0, len(self.arrays[j])
        g = int(self._sched[0, j])
        f = int(np.searchsorted(self._file_docs, g, side="right"))
        i = g - (int(self._file_docs[f - 1]) if f else 0)
        ends = self._doc_ends[f]
        return self.arrays[f], int(ends[i - 1]) if i else 0, int(ends[i])

    def window(self, start: int, length: int) -> np.ndarray:
        if start < 0 or length < 0 or start + length > self.total_tokens:
            raise IndexError(f"tokens [{start}, {start + length}) outside the stream of {self.total_tokens}")
        out = np.empty(length, dtype=np.int64)
        filled = 0
        j = int(np.searchsorted(self._ends, start, side="right"))
        while filled < length:
            a, lo, hi = self._segment(j)
            pos = lo + start + filled - (int(self._ends[j - 1]) if j else 0)
            take = min(length - filled, hi - pos)
            out[filled:filled + take] = a[pos:pos + take]
            filled += take
            j += 1
        return out


def _mix(x: int) -> int:
    """splitmix64 on a Python int."""
    x = (x + 0x9E3779B97F4A7C15) & _M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M
    return x ^ (x >> 31)


def permute(i: int, n: int, key: int) -> int:
    """A bijection of range(n) chosen by `key`: 4 Feistel rounds on the smallest even-bit domain >= n, cycle-walked
    back into range (at most ~4 steps on average)."""
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1
    x = i
    while True:
        left, right = x >> half, x & mask
        for rnd in range(4):
            left, right = right, left ^ (_mix(right ^ _mix(key ^ rnd)) & mask)
        x = (left << half) | right
        if x < n:
            return x


def _first(rank: int, world_size: int, start_sample: int) -> int:
    if world_size < 1 or not 0 <= rank < world_size or start_sample < 0:
        raise ValueError(f"need 0 <= rank < world_size and start_sample >= 0, got rank={rank}, "
                         f"world_size={world_size}, start_sample={start_sample}")
    return start_sample + (rank - start_sample) % world_size


def sample_indices(num_samples: int, *, rank: int = 0, world_size: int = 1, seed: int | None = None,
                   start_sample: int = 0, epochs: int = 1) -> Iterator[int]:
    """Window numbers rank `rank` reads from global sample `start_sample` to the end of `epochs` epochs."""
    for g in range(_first(rank, world_size, start_sample), epochs * num_samples, world_size):
        epoch, i = divmod(g, num_samples)
        yield i if seed is None else permute(i, num_samples, _mix(_mix(seed & _M) ^ epoch))


def count_samples(num_samples: int, *, rank: int = 0, world_size: int = 1, start_sample: int = 0,
                  epochs: int = 1) -> int:
    return len(range(_first(rank, world_size, start_sample), epochs * num_samples, world_size))
