"""The two datatrove steps of near-duplicate removal.

- NearDedupSignature (split pass, parallel, after the filters): computes each kept
  document's MinHash signature and leaves it in its metadata for the merge pass.
- NearDedup (merge pass, one task, after ExactDedup): sees the corpus in order and
  rejects a document as `duplicate_near` when a band of its signature equals a band of an
  earlier *kept* document and the pair passes the similarity check. The first kept
  document of a cluster stays, whatever the number of tasks or workers. It pops the
  signature from every document, so nothing downstream carries it.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
from datatrove.data import Document, DocumentsPipeline

from data_prep.corpus import records as R
from data_prep.corpus.near_dedup.index import MemoryIndex, SqliteIndex
from data_prep.corpus.near_dedup.minhash import MinHasher
from data_prep.corpus.near_dedup.settings import DedupSettings
from data_prep.corpus.near_dedup.textkey import batches
from data_prep.corpus.step import CorpusStep

# Work-file metadata: base64 of [uint32 key length][bands*rows uint16 hashes][0-2 zero bytes], the
# padding making the payload a multiple of 3 bytes, so a batch's strings decode as one. "" = empty key.
SIGNATURE = "near_dedup_signature"
_CHARS_PER_EDIT = 20  # the max_edits allowance grows by one edit per this many key characters
# The max_edits bar sits this far beyond the allowed edits: the Jaccard estimate of 160 16-bit hashes
# has sigma ~0.035, so a bar at exactly N edits would miss half the pairs N edits apart. Measured on
# scripts/bench_data.py: 0.5 keeps more of the 1-3 edit copies but takes more look-alikes (a product
# name swapped, a clause appended) for copies, 0.25 fewer of both; 0.35 is the compromise.
_EDIT_SLACK = 0.35
# Most LSH candidates are far below the bar (templated reviews share phrases): a first look at
# _HEAD hashes drops those more than _HEAD_MARGIN under it (3.4 sigma at J=0.6) before the full compare.
_HEAD, _HEAD_MARGIN = 32, 0.3
# Within a batch a document meets at most this many earliest batch-mates per band key: bounds the
# pairs when a batch holds a large cluster, whose first member (always met) is the one kept anyway.
_MATES = 64


def _hasher(settings: DedupSettings) -> MinHasher:
    settings.validate()
    return MinHasher(settings.ngram, settings.bands, settings.rows, settings.seed, settings.min_chars)


def _padding(num_hashes: int) -> int:
    return -(4 + 2 * num_hashes) % 3


class NearDedupSignature(CorpusStep):
    """Split pass: MinHash signature of every document not yet rejected, into metadata[SIGNATURE]."""

    type = "🫂 - DEDUP"
    name = "near-dup signature (MinHash of key n-grams)"

    def __init__(self, settings: DedupSettings):
        super().__init__()
        self.settings = settings
        self.hasher = _hasher(settings)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        pad = bytes(_padding(self.hasher.num_hashes))
        for batch in batches(data):
            with self.track_time():
                todo = [d for d in batch if not R.is_rejected(d)]
                if todo:
                    sigs, lengths, whole = self.hasher.signatures([d.text for d in todo])
                    for doc, sig, n in zip(todo, sigs, lengths.tolist()):
                        raw = n.to_bytes(4, "little") + sig.astype("<u2").tobytes() + pad
                        doc.metadata[SIGNATURE] = base64.b64encode(raw).decode("ascii") if n else ""
                    empty = int((lengths == 0).sum())
                    self.stat_update("signatures", value=len(todo) - empty)
                    self.stat_update("whole_key", value=int(whole.sum()))
                    self.stat_update("empty_key", value=empty)
            yield from batch


class NearDedup(CorpusStep):
    """Merge pass, one task, after ExactDedup: rejects later near-duplicates of kept documents.

    A document is a duplicate of the earliest kept document that shares one of its LSH bands
    and passes the similarity check: the estimated Jaccard (share of equal hashes) reaches
    `threshold`, or, for short keys, the value `max_edits` scattered character edits would
    leave (a key of L characters is allowed min(max_edits, L // 20) edits, each changing up to
    `ngram` shingles on either side). On long texts this is the Jaccard threshold alone; on a
    30-character review it accepts one changed character, which Jaccard on character n-grams
    punishes hard, while the ten sample bills, whose look-alikes differ by a third of their
    text, stay apart (see tests/test_near_dedup.py).
    """

    type = "🫂 - DEDUP"
    name = "near (MinHash LSH, first kept in corpus order)"

    def __init__(self, settings: DedupSettings, state_dir: str | Path | None = None):
        super().__init__()
        self.settings = settings
        self.hasher = _hasher(settings)
        self.state_dir = Path(state_dir) if state_dir is not None else None
        if settings.on_disk and self.state_dir is None:
            raise ValueError("data.dedup.on_disk needs a state_dir for NearDedup")

    def thresholds(self, lengths: np.ndarray) -> np.ndarray:
        """The estimated Jaccard a candidate must reach, per key length of the later document."""
        s = self.settings
        edits = np.minimum(s.max_edits, lengths // _CHARS_PER_EDIT)
        shingles = np.maximum(lengths - s.ngram + 1, 1).astype(np.float64)
        changed = s.ngram * (edits + _EDIT_SLACK)
        by_edits = (shingles - changed) / (shingles + changed)
        return np.where((edits > 0) & (lengths >= s.min_chars), np.minimum(s.threshold, by_edits), s.threshold)

    @staticmethod
    def similar(a: np.ndarray, b: np.ndarray, need: np.ndarray) -> np.ndarray:
        """Row-wise check of signature pairs: the head estimate within reach, the full one at the bar."""
        head = min(_HEAD, a.shape[1])
        return (((a[:, :head] == b[:, :head]).mean(axis=1) >= need - _HEAD_MARGIN)
                & ((a == b).mean(axis=1) >= need))

    def _index(self):
        k = self.hasher.num_hashes
        return SqliteIndex(self.state_dir / "near_dedup.sqlite", k) if self.settings.on_disk else MemoryIndex(k)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError(f"{self.name} must see the whole corpus: run it as a single task, got {world_size}")
        index = self._index()
        try:
            for batch in batches(data):
                with self.track_time():
                    self._decide(batch, index)
                yield from batch
        finally:
            index.close()

    def _signatures(self, batch: list[Document]) -> tuple[list[Document], np.ndarray, np.ndarray]:
        """Documents to compare, their key lengths and signatures; pops the signature off every document."""
        todo, enc = [], []
        for doc in batch:
            sig = doc.metadata.pop(SIGNATURE, None)
            if R.is_rejected(doc):
                continue
            if sig is None:
                raise ValueError(f"{R.location(doc.metadata)} has no near-dup signature: NearDedupSignature must "
                                 f"run in the split pass when data.dedup.near is on")
            if sig:
                todo.append(doc)
                enc.append(sig)
            else:
                self.stat_update("empty_key")
        k = self.hasher.num_hashes
        width = 4 + 2 * k + _padding(k)
        if any(len(e) != width // 3 * 4 for e in enc):
            bad = next(len(e) for e in enc if len(e) != width // 3 * 4)
            raise ValueError(f"a signature of ~{(bad * 3 // 4 - 4) // 2} hashes, but data.dedup.bands*rows = {k}: "
                             f"the split pass ran with other data.dedup settings")
        flat = np.frombuffer(base64.b64decode("".join(enc)), dtype=np.uint8).reshape(len(enc), width)
        lengths = flat[:, :4].copy().view("<u4").ravel().astype(np.int64)
        return todo, lengths, flat[:, 4:4 + 2 * k].copy().view("<u2")

    def _decide(self, batch: list[Document], index) -> None:
        todo, lengths, sigs = self._signatures(batch)
        m = len(todo)
        if m == 0:
            return
        self.stat_update("compared", value=m)
        keys = self.hasher.band_keys(sigs)
        need = self.thresholds(lengths)

        # against documents kept in earlier batches, at once: the earliest passing one wins
        match = np.full(m, -1, dtype=np.int64)
        cdoc, cord = index.candidates(keys)
        if cdoc.size:
            self.stat_update("candidate_pairs", value=int(cdoc.size))
            head = min(_HEAD, sigs.shape[1])
            near = (sigs[cdoc, :head] == index.signatures(cord, head)).mean(axis=1) >= need[cdoc] - _HEAD_MARGIN
            cdoc, cord = cdoc[near], cord[near]
            ok = (sigs[cdoc] == index.signatures(cord)).mean(axis=1) >= need[cdoc]
            pdoc, pord = cdoc[ok], cord[ok]
            order = np.lexsort((pord, pdoc))
            pdoc, pord = pdoc[order], pord[order]
            first = np.r_[True, pdoc[1:] != pdoc[:-1]]
            match[pdoc[first]] = pord[first]

        # within the batch: pairs (later, earlier) sharing a band, checked at once; then, in order,
        # a document is a duplicate of its earliest passing batch-mate that was itself kept
        local = np.full(m, -1, dtype=np.int64)
        later, earlier = self._batch_pairs(keys, match < 0)
        if later.size:
            self.stat_update("candidate_pairs", value=int(later.size))
            ok = self.similar(sigs[later], sigs[earlier], need[later])
            rejected: set[int] = set()
            for j, c in zip(later[ok].tolist(), earlier[ok].tolist()):  # sorted by later, then earlier
                if j not in rejected and c not in rejected:
                    rejected.add(j)
                    local[j] = c
        for j in np.flatnonzero(match >= 0).tolist():
            self._reject(todo[j], *index.ref(int(match[j])))
        for j in np.flatnonzero(local >= 0).tolist():
            mate = todo[local[j]]
            self._reject(todo[j], mate.id, R.location(mate.metadata))
        kept = np.flatnonzero((match < 0) & (local < 0))
        index.add(keys[kept], sigs[kept], [(todo[j].id, R.location(todo[j].metadata)) for j in kept.tolist()])

    @staticmethod
    def _batch_pairs(keys: np.ndarray, open_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (later, earlier) row pairs of the batch sharing a band key, sorted; rows already
        matched to the index are left out. Each row meets at most the _MATES earliest rows per key."""
        m, b = keys.shape
        rows = np.repeat(np.arange(m), b)[np.repeat(open_rows, b)]
        flat = keys[open_rows].ravel()
        if flat.size == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        order = np.lexsort((rows, flat))
        fk, fr = flat[order], rows[order]
        idx = np.arange(fk.size)
        start = np.maximum.accumulate(np.where(np.r_[True, fk[1:] != fk[:-1]], idx, 0))
        cnt = np.minimum(idx - start, _MATES)
        total = int(cnt.sum())
        if total == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        rep = np.repeat(idx, cnt)
        offset = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        code = np.unique((fr[rep].astype(np.int64) << 32) | fr[start[rep] + offset].astype(np.int64))
        return code >> 32, code & 0xFFFFFFFF

    def _reject(self, doc: Document, dup_id: str, dup_location: str) -> None:
        R.reject(doc, R.DUPLICATE_NEAR, None)
        doc.metadata[R.DUPLICATE_OF], doc.metadata[R.DUPLICATE_OF_LOCATION] = dup_id, dup_location
        self.stat_update("duplicates")
