"""The comparison key of a text, and hashes of its character windows, for a batch of texts at once.

Key: lower-cased letters and digits only. Whitespace, punctuation, symbols and emoji
go, and so do standalone jamo (ㅋㅋ ㅎㅎ ㅠㅠ ㄷㄷ: emoticons in Korean text, never part
of a composed syllable), then every run of one character is squeezed to one
("좋아요오오오" -> "좋아요오"). Texts that differ only in 띄어쓰기, punctuation or
emoticon runs get the same key.

Everything is numpy over the concatenated UTF-32 code points of a batch, so the
per-text Python cost is a join and a length; `Keys.seg` says which text a code point
belongs to.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator

import numpy as np
from datatrove.data import Document

U64 = np.uint64
_BASE = 0x9E3779B97F4A7C15  # odd, so it has an inverse mod 2**64 and the prefix hashes can be "divided"
_BASE_INV = pow(_BASE, -1, 1 << 64)
_SALT = 0xD6E8FEB86659FD93  # times the window length: windows of different lengths hash apart


def batches(docs: Iterable[Document], max_docs: int = 2048, max_chars: int = 4_000_000) -> Iterator[list[Document]]:
    """Consecutive runs of documents, in order; long documents end a run early (bounded temporaries)."""
    batch, chars = [], 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc.text)
        if len(batch) >= max_docs or chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


@lru_cache(maxsize=1)
def _bmp_tables() -> tuple[np.ndarray, np.ndarray]:
    """keep[c], lower[c] for the Basic Multilingual Plane (65,536 lookups, ~50 ms once per process)."""
    keep = np.zeros(0x10000, dtype=bool)
    lower = np.arange(0x10000, dtype=np.uint32)
    for c in range(0x10000):
        ch = chr(c)
        cat = unicodedata.category(ch)
        keep[c] = cat[0] in "LN"
        low = ch.lower()
        if len(low) == 1:
            lower[c] = ord(low)
    keep[0x3131:0x3190] = False  # Hangul compatibility jamo: ㄱ..ㅎ ㅏ..ㅣ, the ㅋㅋ/ㅠㅠ emoticons
    keep[0xFFA0:0xFFDD] = False  # their halfwidth forms
    return keep, lower


@dataclass
class Keys:
    """The keys of a batch of texts, concatenated: code points, the text each belongs to,
    and its position in that text's original string (to cut readable snippets)."""

    cp: np.ndarray  # uint64 code points of all keys, text after text
    seg: np.ndarray  # int32 index of the text each code point belongs to
    pos: np.ndarray | None  # int64 offset of the code point in its original text, if asked for
    lengths: np.ndarray  # int64 key length per text
    starts: np.ndarray  # int64 offset of each text's key in cp

    def key(self, i: int) -> str:
        s = int(self.starts[i])
        return self.cp[s:s + int(self.lengths[i])].astype(np.uint32).tobytes().decode("utf-32-le")


def keys(texts: list[str], positions: bool = False) -> Keys:
    """Keys of a batch of texts; `positions` also maps each key character back to its text (snippets)."""
    n = len(texts)
    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=n)
    raw = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    seg = np.repeat(np.arange(n, dtype=np.int32), lens)
    keep_t, lower_t = _bmp_tables()
    if raw.size == 0 or raw.max() < 0x10000:  # the usual case: no emoji, no rare ideographs
        keep = keep_t[raw]
        cp = lower_t[raw[keep]]
    else:
        bmp = raw < 0x10000
        low16 = raw & 0xFFFF
        # beyond the BMP keep the CJK ideograph planes (letters), drop the rest (emoji and symbols mostly)
        keep = np.where(bmp, keep_t[low16], (raw >= 0x20000) & (raw < 0x40000))
        cp = np.where(bmp, lower_t[low16], raw)[keep]
    seg = seg[keep]
    pos = (np.arange(raw.size, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens))[keep] if positions else None
    if cp.size:
        first = np.ones(cp.size, dtype=bool)  # squeeze runs of one character within a text
        first[1:] = (cp[1:] != cp[:-1]) | (seg[1:] != seg[:-1])
        cp, seg = cp[first], seg[first]
        pos = pos[first] if positions else None
    lengths = np.bincount(seg, minlength=n).astype(np.int64)
    return Keys(cp.astype(U64), seg, pos, lengths, np.cumsum(lengths) - lengths)


@lru_cache(maxsize=4)
def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE**i and BASE**-i mod 2**64 for i < n (uint64 products wrap, which is the modulus)."""
    pw = np.full(n, _BASE, dtype=U64)
    pw[0] = 1
    inv = np.full(n, _BASE_INV, dtype=U64)
    inv[0] = 1
    return np.cumprod(pw, dtype=U64), np.cumprod(inv, dtype=U64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads the polynomial hash over all 64 bits."""
    x = x ^ (x >> U64(30))
    x = x * U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> U64(27))
    x = x * U64(0x94D049BB133111EB)
    return x ^ (x >> U64(31))


class WindowHasher:
    """64-bit hashes of key windows of any length, from one prefix-hash pass over a batch.

    hash(cp[i:i+L]) = mix(sum_j cp[i+j] * BASE**j + L * salt): the same for the same characters
    wherever they occur, in any batch. Powers are cached per size class, so keep batches bounded.
    """

    def __init__(self, k: Keys):
        self.k = k
        n = k.cp.size
        size = 1 << max(10, int(n).bit_length())  # power-of-two size class keeps the cache small
        self.pw, self.inv = _powers(size)
        prefix = np.zeros(n + 1, dtype=U64)
        np.cumsum(k.cp * self.pw[:n], dtype=U64, out=prefix[1:])
        self.prefix = prefix

    def windows(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, start offsets in cp) of every window of `length` key characters inside one text."""
        k = self.k
        m = k.cp.size - length + 1
        if length < 1 or m <= 0:
            return np.empty(0, dtype=U64), np.empty(0, dtype=np.int64)
        start = np.flatnonzero(k.seg[:m] == k.seg[length - 1:])
        h = (self.prefix[start + length] - self.prefix[start]) * self.inv[start]
        return _mix(h + U64(length * _SALT % (1 << 64))), start

    def char_sets(self, texts: np.ndarray) -> np.ndarray:
        """uint64 per listed text: bit (hash of c) % 64 set for every character c of its key. An edit
        changes at most two bits, so popcount(a ^ b) / 2 bounds the edit distance from below."""
        k = self.k
        bits = U64(1) << (_mix(k.cp) & U64(63))
        out = np.zeros(k.lengths.size, dtype=U64)
        has = k.lengths > 0
        if has.any():
            out[has] = np.bitwise_or.reduceat(bits, k.starts[has])
        return out[texts]

    def spans(self, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Hashes of arbitrary windows cp[start:start+length] (same scheme as `windows`)."""
        h = (self.prefix[starts + lengths] - self.prefix[starts]) * self.inv[starts]
        return _mix(h + lengths.astype(U64) * U64(_SALT))

    def whole(self, texts: np.ndarray) -> np.ndarray:
        """Hash of each listed text's entire key (same scheme as `windows`, so the whole key of a
        text of length L equals its one window of length L)."""
        return self.spans(self.k.starts[texts], self.k.lengths[texts])
