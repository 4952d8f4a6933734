"""`data.dedup`: exact and near-duplicate removal."""

from __future__ import annotations

import math
from dataclasses import dataclass

KEY = "data.dedup"


@dataclass
class DedupSettings:
    exact: bool = True  # drop later copies of the same NFC text (sha256), any length
    near: bool = True  # drop later near-duplicates (see near_dedup/: MinHash LSH, and edits for short keys)
    ngram: int = 3  # characters per shingle, on the key (no spaces/punctuation/emoticons, runs squeezed)
    bands: int = 32  # LSH bands; a pair becomes a candidate when all rows of one band agree
    rows: int = 5  # hashes per band; signature = bands*rows 16-bit values (320 bytes at 32x5)
    threshold: float = 0.8  # estimated Jaccard of the shingle sets at or above which a candidate is a duplicate
    max_edits: int = 3  # below threshold, still a duplicate if this few scattered char edits apart (<= 1 per 20 chars)
    min_chars: int = 10  # keys shorter than this have no MinHash signature (too few n-grams); short_* below
    # Short keys: a pair whose earlier key has at most short_chars characters is also a duplicate when its
    # character edit distance (Levenshtein on the keys) is at most short_edits and at most
    # (1 - short_similarity) x the longer key: 1 edit from 5 key characters, 2 from 10 (at the defaults).
    # Candidates come from an exact partition filter, not from n-grams: every pair within short_edits is seen.
    short_chars: int = 60
    short_edits: int = 2
    short_similarity: float = 0.8
    seed: int = 1  # hash functions; signatures from different seeds are not comparable
    on_disk: bool = False  # exact-dedup digests in sqlite under the stage dir, not RAM (see README: memory)
    # The candidate search runs as its own pass between the split and merge passes: `buckets` tasks
    # (Slurm array tasks), each taking every buckets-th of `partitions` hash partitions of the band and
    # edit-filter keys; more partitions, less memory per partition (and more, smaller work files).
    buckets: int = 2
    partitions: int = 32
    holders: int = 64  # per key, a document is compared with at most this many earliest documents sharing it

    def validate(self) -> None:
        """Raise ValueError naming the offending `data.dedup.<field>`."""
        for name in ("ngram", "bands", "rows", "buckets", "partitions", "holders"):
            if getattr(self, name) < 1:
                raise ValueError(f"{KEY}.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"{KEY}.threshold must be in (0, 1], got {self.threshold}")
        if not 0.0 < self.short_similarity < 1.0:
            raise ValueError(f"{KEY}.short_similarity must be in (0, 1), got {self.short_similarity}")
        for name in ("max_edits", "short_edits", "short_chars"):
            if getattr(self, name) < 0:
                raise ValueError(f"{KEY}.{name} must be >= 0, got {getattr(self, name)}")
        if self.short_edits > 4:  # the filter's probes grow as edits^2 per key length
            raise ValueError(f"{KEY}.short_edits must be <= 4, got {self.short_edits}")
        if self.min_chars < self.ngram:
            raise ValueError(f"{KEY}.min_chars ({self.min_chars}) must be >= {KEY}.ngram ({self.ngram}): "
                             f"a shorter key has no n-gram at all")
        if self.partitions > 4096:
            raise ValueError(f"{KEY}.partitions must be <= 4096 (work files per task), got {self.partitions}")

    def allowed_edits(self, longer):
        """Edits allowed between two keys, by the longer key's length (int or numpy array)."""
        import numpy as np

        by_share = np.floor((1.0 - self.short_similarity) * np.asarray(longer) + 1e-9).astype(np.int64)
        return np.minimum(self.short_edits, by_share)

    @property
    def short_min(self) -> int:
        """The shortest key the edit filter indexes: a shorter one is allowed no edit against any key it
        could be within reach of, and every partition piece must hold a character."""
        if self.short_edits == 0:
            return self.short_chars + 1  # no edit rule: nothing to index
        return max(self.short_edits + 1, math.ceil(1.0 / (1.0 - self.short_similarity) - 1e-9) - 1)
