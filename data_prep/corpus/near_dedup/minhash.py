"""MinHash signatures of character n-grams of the text key, and the LSH band keys built from them.

A signature is bands*rows minimum hash values, one per hash function
h_k(x) = ((a_k * x + b_k) mod 2**64) >> 32 (multiply-add-shift, strongly universal for
32-bit x), over the 64-bit hashes x of the key's n-grams. Only the low 16 bits of each
minimum are kept ("b-bit minhash", Li & König 2010): two unrelated values agree with
probability 2**-16, so the Jaccard estimate shifts by < 0.00002 while signatures, work
files and the kept-document index are half the size of 32-bit ones.

A key shorter than `min_chars` has too few n-grams for a Jaccard estimate to mean much: it
gets no signature (documents with the same key are linked by the key's hash, and short keys
are compared by edits, see editfilter.py).
"""

from __future__ import annotations

import sys

import numpy as np

from data_prep.corpus.near_dedup.textkey import U64, WindowHasher, _mix, keys

# (hash function x n-gram) values per block: 2 MB of uint64, cache-sized, whatever the text lengths
_BLOCK_VALUES = 256 * 1024
_HIGH = 1 if sys.byteorder == "little" else 0  # which uint32 half of a uint64 holds its high bits


def _splitmix64(seed: int, n: int) -> np.ndarray:
    """n pseudo-random uint64 from a seed, the same on every platform and numpy version."""
    out, x, mask = [], seed & 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF
    for _ in range(n):
        x = (x + 0x9E3779B97F4A7C15) & mask
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return np.array(out, dtype=np.uint64)


_BAND_MULT = _splitmix64(0x6B676F76, 64) | U64(1)


class MinHasher:
    def __init__(self, ngram: int, bands: int, rows: int, seed: int):
        self.ngram, self.bands, self.rows = ngram, bands, rows
        self.num_hashes = bands * rows
        params = _splitmix64(seed, 2 * self.num_hashes)
        self.a, self.b = params[:self.num_hashes], params[self.num_hashes:]

    def signatures(self, hasher: WindowHasher, docs: np.ndarray) -> np.ndarray:
        """uint16 signatures [len(docs), bands*rows] of the listed rows of a batch (keys of >= ngram chars)."""
        n = hasher.k.lengths.size
        want = np.zeros(n, dtype=bool)
        want[docs] = True
        h, start = hasher.windows(self.ngram)
        hseg = hasher.k.seg[start]
        use = want[hseg]
        x, hseg = h[use] >> U64(32), hseg[use]
        # hash functions x n-grams, in cache-sized blocks of n-grams: numpy's reduceat is fast
        # along the last axis, and the block stays in L2 between the multiply, add and min
        sig = np.full((self.num_hashes, n), 0xFFFFFFFF, dtype=np.uint32)
        b = self.b[:, None]
        step = max(64, _BLOCK_VALUES // self.num_hashes)
        for s in range(0, x.size, step):
            segs = hseg[s:s + step]
            vals = np.multiply.outer(self.a, x[s:s + step])
            vals += b
            high = vals.view(np.uint32)[:, _HIGH::2]  # (a*x + b) >> 32 without another pass
            bounds = np.flatnonzero(np.r_[True, segs[1:] != segs[:-1]])
            cols = segs[bounds]  # distinct: a text's n-grams are contiguous
            sig[:, cols] = np.minimum(sig[:, cols], np.minimum.reduceat(high, bounds, axis=1))
        return (sig.T[docs] & 0xFFFF).astype(np.uint16)

    def of_texts(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(signatures, key lengths) of whole texts, e.g. for a reference computation."""
        hasher = WindowHasher(keys(texts))
        return self.signatures(hasher, np.arange(len(texts))), hasher.k.lengths

    def band_keys(self, sig: np.ndarray) -> np.ndarray:
        """uint64 [m, bands]: one key per band of rows values, the band's index mixed in, so one
        table can hold every band."""
        m = sig.shape[0]
        vals = sig.reshape(m, self.bands, self.rows).astype(U64)
        acc = np.zeros((m, self.bands), dtype=U64)
        for j in range(self.rows):
            acc += vals[:, :, j] * _BAND_MULT[j % 64]
        acc += np.arange(self.bands, dtype=U64) * U64(0x9E3779B97F4A7C15)
        return _mix(acc)
