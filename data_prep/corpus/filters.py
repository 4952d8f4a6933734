"""Filters that mark documents instead of dropping them.

datatrove's BaseFilter removes a document from the stream (optionally writing it to
an exclusion writer). Here a rejected document stays in the stream with its reason,
so a single writer at the end sees everything, in corpus order.
"""

from __future__ import annotations

from abc import abstractmethod

from datatrove.data import Document, DocumentsPipeline

from data_prep.corpus import records as R
from data_prep.corpus.step import CorpusStep


class MarkingFilter(CorpusStep):
    """Base: `check` returns None to keep a document, or (reason, detail) to reject it."""

    type = "🔻 - FILTER"

    @abstractmethod
    def check(self, doc: Document) -> tuple[str, str | None] | None:
        raise NotImplementedError

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            if not R.is_rejected(doc):
                with self.track_time():
                    verdict = self.check(doc)
                self.stat_update("checked")
                if verdict:
                    R.reject(doc, *verdict)
                    self.stat_update(f"rejected_{verdict[0]}")
            yield doc


class EmptyTextFilter(MarkingFilter):
    """Whitespace-only text is no document, whatever min_chars says."""

    name = "empty text"

    def check(self, doc: Document):
        return None if doc.text.strip() else (R.EMPTY_TEXT, None)


class LengthFilter(MarkingFilter):
    """Characters of the normalised text within [min_chars, max_chars]."""

    name = "length"

    def __init__(self, min_chars: int, max_chars: int):
        super().__init__()
        self.min_chars, self.max_chars = min_chars, max_chars

    def check(self, doc: Document):
        n = len(doc.text)
        if n < self.min_chars:
            return R.TOO_SHORT, f"{n} chars < min_chars={self.min_chars}"
        if n > self.max_chars:
            return R.TOO_LONG, f"{n} chars > max_chars={self.max_chars}"
        return None
