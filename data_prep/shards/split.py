"""Train/validation split by a stable hash of the document id.

A document's side depends only on its id (sha256, not Python's salted hash()), so it stays
put when the corpus grows, files are re-split or the run is repeated on another machine.
Validation is every id whose 64-bit hash is below `validation_fraction` of the range,
widened to at least `min_validation_docs` documents (the smallest hashes) when the corpus
has 2 or more, and narrowed so that train keeps at least one document.
"""

from __future__ import annotations

import hashlib
import heapq
from typing import Iterable

_RANGE = 1 << 64


def id_hash(doc_id: str) -> int:
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")


def validation_cutoff(ids: Iterable[str], validation_fraction: float, min_validation_docs: int) -> tuple[int, int]:
    """(cutoff, documents): a document is in validation iff id_hash(id) < cutoff. One pass, O(k) memory."""
    cutoff = int(validation_fraction * _RANGE)
    n = below = 0
    smallest: list[int] = []  # max-heap (negated) of the k smallest hashes
    largest = -1
    k = max(min_validation_docs, 0)
    for doc_id in ids:
        h = id_hash(doc_id)
        n += 1
        below += h < cutoff
        largest = max(largest, h)
        if k:
            if len(smallest) < k:
                heapq.heappush(smallest, -h)
            elif h < -smallest[0]:
                heapq.heapreplace(smallest, -h)
    if n < 2:
        return 0, n  # a single document trains
    if below < k:
        cutoff = -smallest[0] + 1 if len(smallest) == k else largest  # the k smallest, at most n-1
    return min(cutoff, largest), n  # the largest hash always stays in train
