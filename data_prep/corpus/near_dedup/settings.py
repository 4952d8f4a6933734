"""`data.dedup`: exact and near-duplicate removal."""

from __future__ import annotations

from dataclasses import dataclass

KEY = "data.dedup"


@dataclass
class DedupSettings:
    exact: bool = True  # drop later copies of the same NFC text (sha256), any length
    near: bool = True  # drop later near-duplicates (MinHash LSH on the text key, see near_dedup/)
    ngram: int = 3  # characters per shingle, on the key (no spaces/punctuation/emoticons, runs squeezed)
    bands: int = 32  # LSH bands; a pair becomes a candidate when all rows of one band agree
    rows: int = 5  # hashes per band; signature = bands*rows 16-bit values (320 bytes at 32x5)
    threshold: float = 0.8  # estimated Jaccard of the shingle sets at or above which a candidate is a duplicate
    max_edits: int = 3  # below threshold, still a duplicate if this few scattered char edits apart (<= 1 per 20 chars)
    min_chars: int = 10  # keys shorter than this match only the same key (their whole key is the one shingle)
    seed: int = 1  # hash functions; signatures from different seeds are not comparable
    on_disk: bool = False  # dedup state (exact digests, near-dup index) in sqlite under the stage dir, not RAM

    def validate(self) -> None:
        """Raise ValueError naming the offending `data.dedup.<field>`."""
        for name in ("ngram", "bands", "rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{KEY}.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"{KEY}.threshold must be in (0, 1], got {self.threshold}")
        if self.max_edits < 0:
            raise ValueError(f"{KEY}.max_edits must be >= 0, got {self.max_edits}")
        if self.min_chars < self.ngram:
            raise ValueError(f"{KEY}.min_chars ({self.min_chars}) must be >= {KEY}.ngram ({self.ngram}): "
                             f"a shorter key has no n-gram at all")
