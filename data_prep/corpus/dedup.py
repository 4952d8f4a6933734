"""Exact deduplication on the normalised text, over the whole corpus in corpus order.

Every length counts, short texts included (datatrove's MinHash gives short documents
no signature, so it cannot stand in here). The first occurrence by (input file
order, line) is kept, so the result does not depend on how files were split across
tasks. With near-dedup on, it runs after it: near-dedup already rejects exact copies of the
documents it keeps (as duplicate_exact), so this step sees the texts it has no key for.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline

from data_prep.corpus import records as R
from data_prep.corpus.near_dedup.textkey import batches, keys
from data_prep.corpus.step import CorpusStep


class _MemorySeen:
    """digest -> (id, location) of the kept document: about 200 bytes each, some 2 GB per 10 M kept."""

    def __init__(self):
        self.first: dict[bytes, tuple[str, str]] = {}

    def lookup(self, digests: list[bytes]) -> dict[bytes, tuple[str, str]]:
        first = self.first
        return {d: first[d] for d in digests if d in first}

    def add(self, kept: dict[bytes, tuple[str, str]]) -> None:
        self.first.update(kept)

    def close(self) -> None:
        self.first = {}


class _SqliteSeen:
    """The same in sqlite under the stage dir: RAM bounded by its page cache whatever the corpus size."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # an earlier run's documents must not count as "earlier"
        self.db = sqlite3.connect(str(path))
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-131072"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY, id TEXT, location TEXT) WITHOUT ROWID")

    def lookup(self, digests: list[bytes]) -> dict[bytes, tuple[str, str]]:
        found = {}
        for s in range(0, len(digests), 900):  # sqlite's bound-parameter limit
            chunk = digests[s:s + 900]
            rows = self.db.execute(f"SELECT digest, id, location FROM seen WHERE digest IN ({','.join('?' * len(chunk))})",
                                   chunk)
            found.update((d, (i, loc)) for d, i, loc in rows)
        return found

    def add(self, kept: dict[bytes, tuple[str, str]]) -> None:
        self.db.executemany("INSERT INTO seen VALUES (?, ?, ?)", ((d, i, loc) for d, (i, loc) in kept.items()))
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class ExactDedup(CorpusStep):
    """Marks a document `duplicate_exact` when its sha256 was seen on an earlier kept document.

    Must see the whole corpus in order, hence a single task after the merge. The digests of
    kept documents live in memory, or with `on_disk` in `<state_dir>/exact_dedup.sqlite`.
    With `empty_keys_only` (near-dedup ran before it and took every copy of a text that has a key)
    it looks only at texts without a key (punctuation, emoticons): its memory then stays small.
    """

    type = "🫂 - DEDUP"
    name = "exact (sha256 of NFC text)"

    def __init__(self, state_dir: str | Path | None = None, on_disk: bool = False, empty_keys_only: bool = False):
        super().__init__()
        if on_disk and state_dir is None:
            raise ValueError("data.dedup.on_disk needs a state_dir for ExactDedup")
        self.state_dir, self.on_disk, self.empty_keys_only = state_dir, on_disk, empty_keys_only

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError(f"{self.name} must see the whole corpus: run it as a single task, got {world_size}")
        seen = _SqliteSeen(Path(self.state_dir) / "exact_dedup.sqlite") if self.on_disk else _MemorySeen()
        try:
            for batch in batches(data):
                with self.track_time():
                    self._decide(batch, seen)
                yield from batch
        finally:
            seen.close()

    def _decide(self, batch: list[Document], seen) -> None:
        docs = [d for d in batch if not R.is_rejected(d)]
        if self.empty_keys_only and docs:
            empty = keys([d.text for d in docs]).lengths == 0
            docs = [d for d, e in zip(docs, empty.tolist()) if e]
        todo = [(bytes.fromhex(d.metadata[R.SHA256]), d) for d in docs]
        earlier = seen.lookup([digest for digest, _ in todo])
        kept: dict[bytes, tuple[str, str]] = {}
        for digest, doc in todo:
            first = earlier.get(digest) or kept.get(digest)
            if first is None:
                kept[digest] = (doc.id, R.location(doc.metadata))
            else:
                R.reject(doc, R.DUPLICATE_EXACT, None)
                doc.metadata[R.DUPLICATE_OF], doc.metadata[R.DUPLICATE_OF_LOCATION] = first
                self.stat_update("duplicates")
        seen.add(kept)
