"""Exact deduplication on the normalised text, over the whole corpus in corpus order.

Every length counts, short texts included (datatrove's MinHash gives short documents
no signature, so it cannot stand in here). The first occurrence by (input file
order, line) is kept, so the result does not depend on how files were split across
tasks. Near-duplicates are a separate, later step.
"""

from __future__ import annotations

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from data_prep.corpus import records as R


class ExactDedup(PipelineStep):
    """Marks a document `duplicate_exact` when its sha256 was seen on an earlier kept document.

    Holds one entry per kept document (digest -> id, location) in memory: about
    200 bytes each, so some 2 GB per 10 M kept documents. Must see the whole corpus
    in order, hence a single task after the merge.
    """

    type = "🫂 - DEDUP"
    name = "exact (sha256 of NFC text)"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError(f"{self.name} must see the whole corpus: run it as a single task, got {world_size}")
        first: dict[bytes, tuple[str, str]] = {}
        for doc in data:
            if not R.is_rejected(doc):
                with self.track_time():
                    digest = bytes.fromhex(doc.metadata[R.SHA256])
                    kept = first.get(digest)
                    if kept is None:
                        first[digest] = (doc.id, R.location(doc.metadata))
                    else:
                        R.reject(doc, R.DUPLICATE_EXACT, None)
                        doc.metadata[R.DUPLICATE_OF], doc.metadata[R.DUPLICATE_OF_LOCATION] = kept
                        self.stat_update("duplicates")
            yield doc
