"""When is a candidate pair a near-duplicate: the two checks, on the text keys.

- MinHash (keys of min_chars characters or more): the estimated Jaccard of the key's character
  n-grams reaches `threshold`, or, for short keys, the value `max_edits` scattered character edits
  would leave (a key of L characters is allowed min(max_edits, L // 20) edits, each changing up to
  `ngram` shingles on either side). On long texts this is the Jaccard threshold alone.
- Edits (the earlier key at most short_chars characters): Levenshtein distance of the keys at most
  settings.allowed_edits(longer key): 1 edit from 5 characters, 2 from 10 at the defaults. On a
  20-character review a two-character edit leaves a 3-gram Jaccard of ~0.6-0.8, too low for any
  safe Jaccard bar, while the distance is exactly 2. Different short texts that share a phrase
  differ by more than that.
"""

from __future__ import annotations

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cpdist

from data_prep.corpus.near_dedup.settings import DedupSettings

_CHARS_PER_EDIT = 20  # the max_edits allowance grows by one edit per this many key characters
# The max_edits bar sits this far beyond the allowed edits: the Jaccard estimate of 160 16-bit hashes
# has sigma ~0.035, so a bar at exactly N edits would miss half the pairs N edits apart. Measured on
# scripts/bench_data.py: 0.5 keeps more of the 1-3 edit copies but takes more look-alikes (a product
# name swapped, a clause appended) for copies, 0.25 fewer of both; 0.35 is the compromise.
_EDIT_SLACK = 0.35
# Most LSH candidates are far below the bar (templated reviews share phrases): a first look at
# HEAD hashes drops those more than _HEAD_MARGIN under it (3.4 sigma at J=0.6) before the full compare.
HEAD, _HEAD_MARGIN = 32, 0.3


def jaccard_needed(settings: DedupSettings, lengths: np.ndarray) -> np.ndarray:
    """The estimated Jaccard a candidate must reach, per key length of the later document."""
    s = settings
    edits = np.minimum(s.max_edits, lengths // _CHARS_PER_EDIT)
    shingles = np.maximum(lengths - s.ngram + 1, 1).astype(np.float64)
    changed = s.ngram * (edits + _EDIT_SLACK)
    by_edits = (shingles - changed) / (shingles + changed)
    return np.where((edits > 0) & (lengths >= s.min_chars), np.minimum(s.threshold, by_edits), s.threshold)


def share(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise share of equal hashes: the Jaccard estimate."""
    return np.count_nonzero(a == b, axis=1) / a.shape[1]


def near_at_head(a: np.ndarray, b: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Row-wise first look at the leading HEAD hashes of signature pairs: within reach of the bar?"""
    return share(a[:, :HEAD], b[:, :HEAD]) >= need - _HEAD_MARGIN


def similar(a: np.ndarray, b: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Row-wise check of signature pairs: the head estimate within reach, the full one at the bar."""
    near = near_at_head(a, b, need)
    out = np.zeros(a.shape[0], dtype=bool)
    if near.any():
        out[near] = share(a[near], b[near]) >= need[near]
    return out


def within_edits(settings: DedupSettings, later: list[str], earlier: list[str],
                 longer: np.ndarray | None = None) -> np.ndarray:
    """Row-wise: are the keys within the edits their lengths allow (rapidfuzz, in C)? `longer`: the
    longer key's length per row, if the caller has it."""
    if not later:
        return np.zeros(0, dtype=bool)
    dist = cpdist(later, earlier, scorer=Levenshtein.distance, score_cutoff=settings.short_edits,
                  dtype=np.int32, workers=1)
    if longer is None:
        longer = np.maximum(np.fromiter(map(len, later), np.int64, len(later)),
                            np.fromiter(map(len, earlier), np.int64, len(earlier)))
    return dist <= settings.allowed_edits(longer)
