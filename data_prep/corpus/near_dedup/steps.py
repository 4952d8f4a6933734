"""The three datatrove steps of near-duplicate removal, one per pass of the data stage.

- NearDedupSignature (split pass, `data.tasks` tasks, after the filters): each document's key,
  MinHash signature and edit-filter pieces, written to the work folder (workfiles.py), partitioned
  by hash.
- NearDedupCandidates (near pass, `data.dedup.buckets` tasks, parallel, on Slurm an array job):
  each task takes its share of the partitions and writes the candidate pairs that pass the
  similarity rules (candidates.py). Memory: ~60 bytes per document plus one partition.
- NearDedup (merge pass, one task, before ExactDedup): the only serial part. In corpus order a
  document is a `duplicate_near` of the earliest *kept* document among its checked pairs; a
  document whose whole key an earlier one has follows that one (a duplicate of it if it was kept,
  else of the same document it was a duplicate of), as `duplicate_exact` when its text is the
  kept one's. So every duplicate names a kept document, exact copies included (ExactDedup, after
  it, sees only what near-dedup left: texts with an empty key). The first kept document of a
  cluster stays, whatever the number of tasks, buckets or partitions. Memory: 16 bytes per
  checked pair and a reference for each document some later one was paired with.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.utils.logging import logger

from data_prep.corpus import records as R
from data_prep.corpus.near_dedup.candidates import Corpus, PartitionSearch, distinct
from data_prep.corpus.near_dedup.editfilter import EditFilter
from data_prep.corpus.near_dedup.minhash import MinHasher
from data_prep.corpus.near_dedup.settings import DedupSettings
from data_prep.corpus.near_dedup.textkey import WindowHasher, batches, keys
from data_prep.corpus.near_dedup.workfiles import META, Folder, SplitFiles, order_of
from data_prep.corpus.step import CorpusStep


class _NearStep(CorpusStep):
    """A step of near-dedup: checked settings and the work folder the passes share."""

    type = "🫂 - DEDUP"

    def __init__(self, settings: DedupSettings, work_dir: str | Path):
        super().__init__()
        settings.validate()
        self.settings, self.work_dir = settings, str(work_dir)


class NearDedupSignature(_NearStep):
    """Split pass: the rows and partitioned keys of every document not yet rejected (workfiles.py)."""

    name = "near-dup keys (MinHash bands, edit-filter pieces)"

    def __init__(self, settings: DedupSettings, work_dir: str | Path):
        super().__init__(settings, work_dir)
        self.hasher = MinHasher(settings.ngram, settings.bands, settings.rows, settings.seed)
        self.filter = EditFilter(settings)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        files = SplitFiles(Folder(self.work_dir), rank, self.settings.partitions)
        try:
            for batch in batches(data):
                with self.track_time():
                    self._add([d for d in batch if not R.is_rejected(d)], files)
                yield from batch
        finally:
            files.close()
            self.stat_update("work_bytes", value=files.bytes)

    def _add(self, todo: list[Document], files: SplitFiles) -> None:
        if not todo:
            return
        s = self.settings
        hasher = WindowHasher(keys([d.text for d in todo]))
        lengths = hasher.k.lengths
        rows = np.flatnonzero(lengths > 0)  # an empty key (only spaces, punctuation, emoticons): nothing to compare
        self.stat_update("empty_key", value=len(todo) - rows.size)
        if rows.size == 0:
            return
        length = lengths[rows]
        editable = length <= self.filter.longest  # keys the edit rule may compare: kept for it
        key_len = np.where(editable, length, 0)
        meta = np.empty(rows.size, META)
        meta["order"] = [order_of(todo[i].metadata) for i in rows.tolist()]
        meta["keyhash"] = hasher.whole(rows)
        meta["length"] = length
        meta["key_at"] = files.key_chars + np.cumsum(key_len) - key_len
        meta["chars"] = hasher.char_sets(rows)
        keep_cp = np.zeros(len(todo), dtype=bool)
        keep_cp[rows[editable]] = True
        signed = length >= s.min_chars
        sigs = np.zeros((rows.size, self.hasher.num_hashes), np.uint16)
        if signed.any():
            sigs[signed] = self.hasher.signatures(hasher, rows[signed])
        first = files.add(meta, sigs, hasher.k.cp[keep_cp[hasher.k.seg]])
        task_row = np.full(len(todo), -1, np.int64)
        task_row[rows] = first + np.arange(rows.size)

        m = int(signed.sum())
        if m:
            bands = self.hasher.band_keys(sigs[signed])
            files.entries("band", bands.ravel(), np.repeat(task_row[rows[signed]], s.bands),
                          np.tile(np.arange(s.bands), m))
        if s.short_edits:
            pk, pd = self.filter.index_keys(hasher, rows)
            files.entries("piece", pk, task_row[pd])
            qk, qd = self.filter.probe_keys(hasher, rows)
            files.entries("probe", qk, task_row[qd])
        self.stat_update("signatures", value=m)
        self.stat_update("edit_keys", value=int(editable.sum()))


class NearDedupCandidates(_NearStep):
    """Near pass, task b of `buckets`: the checked pairs of partitions b, b+buckets, ... (candidates.py)."""

    name = "near-dup candidates (band and edit-filter partitions)"

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        s = self.settings
        if world_size != s.buckets:
            raise ValueError(f"{self.name}: run with data.dedup.buckets={s.buckets} tasks, got {world_size}")
        folder = Folder(self.work_dir)
        with self.track_time():
            corpus = Corpus(folder, s.bands * s.rows)
            search = PartitionSearch(corpus, s)
            later, earlier = [], []
            mine = range(rank, s.partitions, world_size)
            started = time.monotonic()
            for done, part in enumerate(mine, 1):
                for fn in (search.band_pairs, search.edit_pairs):
                    a, b = fn(part)
                    later.append(a)
                    earlier.append(b)
                corpus.release()
                elapsed = time.monotonic() - started
                logger.info(f"near task {rank}: partition {done}/{len(mine)}, {corpus.n:,} documents, "
                            f"{search.stats['candidate_pairs']:,} candidate pairs, {search.stats['similar_pairs']:,} "
                            f"similar, {elapsed:,.0f}s, ETA {elapsed / done * (len(mine) - done):,.0f}s")
            a, b = np.concatenate(later), np.concatenate(earlier)
            pairs = np.stack([corpus.order[a], corpus.order[b]], axis=1) if a.size else np.empty((0, 2), np.uint64)
            folder.pairs(rank).parent.mkdir(parents=True, exist_ok=True)
            np.save(folder.pairs(rank), pairs.astype(np.uint64))
            if rank == 0:  # documents whose whole key an earlier one has: linked to the first of them
                follow = np.flatnonzero(~corpus.is_first)
                links = np.stack([corpus.order[follow], corpus.order[corpus.first[follow]]], axis=1)
                np.save(folder.links(), links.astype(np.uint64))
                self.stat_update("same_key", value=int(follow.size))
            self.stat_update("documents", value=corpus.n if rank == 0 else 0)
            for k, v in search.stats.items():
                self.stat_update(k, value=int(v))
        return
        yield  # a generator that yields nothing: the pass has no documents, only files


class NearDedup(_NearStep):
    """Merge pass, one task, before ExactDedup: rejects later near-duplicates (and exact copies) of kept
    documents."""

    name = "near (first kept in corpus order)"

    def _load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Checked pairs and same-key links, each sorted by the later document, and every earlier one."""
        folder = Folder(self.work_dir)
        paths = [folder.pairs(b) for b in range(self.settings.buckets)] + [folder.links()]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f"near-dup candidates missing ({', '.join(missing[:3])}): the near pass "
                             f"(NearDedupCandidates, data.dedup.buckets={self.settings.buckets} tasks) must run "
                             f"between the split and merge passes")
        pairs = np.concatenate([np.load(p) for p in paths[:-1]]).reshape(-1, 2)
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]  # by later, then earlier; a pair found twice once
        pairs = pairs[np.r_[True, (pairs[1:] != pairs[:-1]).any(axis=1)]] if pairs.size else pairs
        links = np.load(paths[-1])
        links = links[np.argsort(links[:, 0])] if links.size else links.reshape(0, 2)
        referenced = distinct(np.r_[pairs[:, 1], links[:, 1]])
        self.stat_update("checked_pairs_loaded", value=int(pairs.shape[0]))
        return pairs, links, referenced

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError(f"{self.name} must see the whole corpus: run it as a single task, got {world_size}")
        pairs, links, referenced = self._load()
        # order -> (kept, id, location, sha256 of the kept document it stands for): only for documents
        # some later one was paired or linked with
        status: dict[int, tuple] = {}
        for batch in batches(data):
            with self.track_time():
                self._decide(batch, pairs, links, referenced, status)
            yield from batch

    def _decide(self, batch: list[Document], pairs: np.ndarray, links: np.ndarray, referenced: np.ndarray,
                status: dict) -> None:
        todo = [d for d in batch if not R.is_rejected(d)]
        if not todo:
            return
        self.stat_update("compared", value=len(todo))
        order = np.fromiter((order_of(d.metadata) for d in todo), np.uint64, len(todo))
        lo, hi = np.searchsorted(pairs[:, 0], order, "left"), np.searchsorted(pairs[:, 0], order, "right")
        li = np.minimum(np.searchsorted(links[:, 0], order), max(links.shape[0] - 1, 0))
        linked = (links[li, 0] == order) if links.shape[0] else np.zeros(len(todo), bool)
        ri = np.minimum(np.searchsorted(referenced, order), max(referenced.size - 1, 0))
        is_ref = (referenced[ri] == order) if referenced.size else np.zeros(len(todo), bool)
        for j in np.flatnonzero((hi > lo) | linked | is_ref).tolist():
            doc, target = todo[j], None
            if linked[j]:
                target = self._status(status, links[li[j], 1], doc)[1:]
            else:
                for earlier in pairs[lo[j]:hi[j], 1].tolist():
                    st = self._status(status, earlier, doc)
                    if st[0]:
                        target = st[1:]
                        break
            sha = doc.metadata.get(R.SHA256)
            if target is not None:
                # the same text as the kept document (only ever with the same key): an exact copy of it
                exact = sha is not None and sha == target[2]
                R.reject(doc, R.DUPLICATE_EXACT if exact else R.DUPLICATE_NEAR, None)
                doc.metadata[R.DUPLICATE_OF], doc.metadata[R.DUPLICATE_OF_LOCATION] = target[:2]
                self.stat_update("exact_copies" if exact else "duplicates")
            if is_ref[j]:
                status[int(order[j])] = (True, doc.id, R.location(doc.metadata), sha) if target is None \
                    else (False, *target)

    @staticmethod
    def _status(status: dict, order, doc: Document) -> tuple[bool, str, str]:
        try:
            return status[int(order)]
        except KeyError:
            raise ValueError(f"{R.location(doc.metadata)}: its near-dup candidate at corpus position {int(order)} "
                             f"was not seen before it: the work folder is from another run") from None


def run_in_process(docs: list[Document], settings: DedupSettings, work_dir: str | Path) -> list[Document]:
    """The three steps on a list of documents in this process (one split task): for tests and small jobs."""
    shutil.rmtree(work_dir, ignore_errors=True)
    signed = list(NearDedupSignature(settings, work_dir).run(iter(docs)))
    for b in range(settings.buckets):
        list(NearDedupCandidates(settings, work_dir).run(None, b, settings.buckets))
    return list(NearDedup(settings, work_dir).run(iter(signed)))
