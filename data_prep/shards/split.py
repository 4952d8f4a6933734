"""Train/validation split by a stable hash of the document id, per source.

A document's side depends only on its id (sha256, not Python's salted hash()), so it stays
put when the corpus grows, files are re-split or the run is repeated on another machine.
Validation is every id whose 64-bit hash is below `validation_fraction` of the range,
widened to at least `min_validation_docs` documents (the smallest hashes) when the source
has 2 or more, and narrowed so that train keeps at least one document. The shards writer
applies the rule to each source on its own (a cutoff per source), so a small source gets
validation documents too instead of vanishing in the big ones' fraction.

SplitScan holds what the rule needs from one pass (count, documents below the fraction, the
k smallest hashes, the largest); scans of parts of a source merge, so workers can scan
batches in parallel.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Iterable

from data_prep.hashing import id_hash

_RANGE = 1 << 64


@dataclass
class SplitScan:
    k: int  # min_validation_docs
    fraction_cutoff: int
    n: int = 0
    below: int = 0
    largest: int = -1
    smallest: list[int] = field(default_factory=list)  # the k smallest hashes, sorted

    @classmethod
    def new(cls, validation_fraction: float, min_validation_docs: int) -> "SplitScan":
        return cls(max(min_validation_docs, 0), int(validation_fraction * _RANGE))

    def add_all(self, hashes: Iterable[int]) -> "SplitScan":
        hashes = list(hashes)
        self.n += len(hashes)
        self.below += sum(h < self.fraction_cutoff for h in hashes)
        self.largest = max([self.largest, *hashes])
        self.smallest = heapq.nsmallest(self.k, self.smallest + hashes) if self.k else []
        return self

    def merge(self, other: "SplitScan") -> "SplitScan":
        self.n, self.below, self.largest = self.n + other.n, self.below + other.below, max(self.largest, other.largest)
        self.smallest = heapq.nsmallest(self.k, self.smallest + other.smallest) if self.k else []
        return self

    def cutoff(self) -> int:
        """A document is in validation iff id_hash(id) < cutoff."""
        if self.n < 2:
            return 0  # a single document trains
        cutoff = self.fraction_cutoff
        if self.below < self.k:
            # the k smallest, at most n-1
            cutoff = self.smallest[-1] + 1 if len(self.smallest) == self.k else self.largest
        return min(cutoff, self.largest)  # the largest hash always stays in train


def validation_cutoff(ids: Iterable[str], validation_fraction: float, min_validation_docs: int) -> tuple[int, int]:
    """(cutoff, documents) for one group of ids."""
    scan = SplitScan.new(validation_fraction, min_validation_docs).add_all(id_hash(i) for i in ids)
    return scan.cutoff(), scan.n
