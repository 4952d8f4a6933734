"""The candidate search of one hash partition: pairs of documents that share a key of the partition,
checked by the rules; no decision is taken here (that needs corpus order: steps.NearDedup).

A document is compared with the earliest `holders` documents before it that share one of its keys.
Only the first document of each key class (documents with the same whole key: the same text up to
spacing, punctuation and emoticon runs) takes part: the others follow it (see steps.NearDedup), so
ten thousand copies of a templated review cost one entry per key, not fifty million pairs.
A pair that shares several bands is checked in the partition of its first shared band only.
"""

from __future__ import annotations

import mmap

import numpy as np

from data_prep.corpus import memory
from data_prep.corpus.near_dedup.rules import HEAD, jaccard_needed, near_at_head, share, within_edits
from data_prep.corpus.near_dedup.settings import DedupSettings
from data_prep.corpus.near_dedup.workfiles import BAND_ENTRY, ENTRY, META, Folder

_PAIRS_PER_CHUNK = 1 << 18  # pairs checked at once: bounds the gathered signatures (~170 MB at 32x5)


class Corpus:
    """What every candidate task needs of all documents, ~60 bytes each in RAM: corpus order and rank,
    key length, the first document of the key class; signatures and keys are read through memory maps.
    A document's id here is its row over all split tasks' rows, task after task."""

    def __init__(self, folder: Folder, num_hashes: int):
        self.folder, self.num_hashes = folder, num_hashes
        self.tasks = folder.tasks()
        metas = [np.fromfile(folder.meta(t), META) for t in self.tasks]
        self.offsets = np.cumsum([0] + [m.size for m in metas]).astype(np.int64)
        meta = np.concatenate(metas) if metas else np.empty(0, META)
        n = self.n = meta.size
        self.order, self.length, self.key_at = meta["order"], meta["length"].astype(np.int64), meta["key_at"]
        self.chars = meta["chars"]
        self.rank = np.empty(n, np.int64)
        self.rank[np.argsort(self.order, kind="stable")] = np.arange(n)
        by = np.lexsort((self.rank, meta["keyhash"]))
        kh = meta["keyhash"][by]
        starts = np.r_[True, kh[1:] != kh[:-1]] if n else np.empty(0, bool)
        self.first = np.empty(n, np.int64)
        self.first[by] = by[np.maximum.accumulate(np.where(starts, np.arange(n), 0))] if n else by
        self.is_first = self.first == np.arange(n)
        self._sigs = [self._map(folder.sigs(t), np.uint16, (int(m.size), num_hashes)) for t, m in zip(self.tasks, metas)]
        self._keys = [self._map(folder.keys(t), np.uint32, None) for t in self.tasks]

    def release(self) -> None:
        """Drop the mapped pages from this process's resident set (they stay in the page cache): each
        partition reads other rows, and the ones read before need not count as this task's memory."""
        for m in self._sigs + self._keys:
            if isinstance(m, np.memmap):
                m._mmap.madvise(mmap.MADV_DONTNEED)

    @staticmethod
    def _map(path, dtype, shape):
        if not path.exists() or path.stat().st_size == 0:
            return np.empty(shape or (0,), dtype)
        return np.memmap(path, dtype=dtype, mode="r", shape=shape)

    def _where(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        task = np.searchsorted(self.offsets, ids, "right") - 1
        return task, ids - self.offsets[task]

    def signatures(self, ids: np.ndarray, hashes: int | None = None) -> np.ndarray:
        """The signatures of ids (only their first `hashes` values: a random read of one cache line, not five)."""
        k = hashes or self.num_hashes
        out = np.empty((ids.size, k), np.uint16)
        task, row = self._where(ids)
        for t in range(len(self.tasks)):
            sel = task == t
            if sel.any():
                out[sel] = self._sigs[t][row[sel], :k]
        return out

    def key_texts(self, ids: np.ndarray) -> list[str]:
        """The keys of ids (distinct, sorted) as strings: gathered and decoded at once per task."""
        out: list[str] = []
        task, _ = self._where(ids)
        for t in range(len(self.tasks)):
            mine = ids[task == t]
            if mine.size == 0:
                continue
            at, n = self.key_at[mine].astype(np.int64), self.length[mine]
            ends = np.cumsum(n)
            cp = np.asarray(self._keys[t])[np.repeat(at - (ends - n), n) + np.arange(int(ends[-1]))]
            text = cp.astype("<u4").tobytes().decode("utf-32-le")
            out += [text[a:b] for a, b in zip((ends - n).tolist(), ends.tolist())]
        return out

    def entries(self, family: str, part: int) -> np.ndarray:
        """The partition's entries of every task, as (key, id[, band]) with id over all tasks."""
        dtype = BAND_ENTRY if family == "band" else ENTRY
        chunks = []
        for t, off in zip(self.tasks, self.offsets.tolist()):
            path = self.folder.entries(family, part, t)
            if path.exists():
                e = np.fromfile(path, dtype)
                out = np.empty(e.size, [("key", "<u8"), ("id", "<i8"), ("band", "<i8")])
                out["key"], out["id"] = e["key"], e["row"].astype(np.int64) + off
                out["band"] = e["band"] if family == "band" else 0
                chunks.append(out)
        ent = np.concatenate(chunks) if chunks else np.empty(0, [("key", "<u8"), ("id", "<i8"), ("band", "<i8")])
        return ent[self.is_first[ent["id"]]]


def distinct(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sorting: numpy's hash-based unique is slower on these arrays)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if x.size else x


def _expand(lo: np.ndarray, cnt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, lo[i] + k) for k < cnt[i]: the [lo, lo+cnt) ranges of every row, flattened."""
    total = int(cnt.sum())
    rep = np.repeat(np.arange(cnt.size), cnt)
    return rep, lo[rep] + np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)


def _chunks(cnt: np.ndarray):
    """Row ranges whose pair counts add up to about _PAIRS_PER_CHUNK."""
    ends = np.searchsorted(np.cumsum(cnt), np.arange(_PAIRS_PER_CHUNK, int(cnt.sum()) + _PAIRS_PER_CHUNK,
                                                      _PAIRS_PER_CHUNK), "right")
    start = 0
    for end in np.unique(np.r_[ends, cnt.size]).tolist():
        if end > start:
            yield start, end
            start = end


class PartitionSearch:
    """Checked (later, earlier) document pairs of one partition, for both families."""

    def __init__(self, corpus: Corpus, settings: DedupSettings):
        self.corpus, self.settings = corpus, settings
        self.stats = {"band_entries": 0, "edit_entries": 0, "candidate_pairs": 0, "checked_pairs": 0,
                      "similar_pairs": 0}

    def band_pairs(self, part: int) -> tuple[np.ndarray, np.ndarray]:
        c, s = self.corpus, self.settings
        ent = c.entries("band", part)
        self.stats["band_entries"] += ent.size
        ent = ent[np.lexsort((c.rank[ent["id"]], ent["key"]))]
        key = ent["key"]
        idx = np.arange(key.size)
        start = np.maximum.accumulate(np.where(np.r_[True, key[1:] != key[:-1]], idx, 0)) if key.size else idx
        cnt = np.minimum(idx - start, s.holders)  # the earliest `holders` documents before it in its group
        later_out, earlier_out = [], []
        for a, b in _chunks(cnt):
            rows, earlier_pos = _expand(start[a:b], cnt[a:b])
            later_pos = rows + a
            if later_pos.size == 0:
                continue
            self.stats["candidate_pairs"] += later_pos.size
            later, earlier, band = ent["id"][later_pos], ent["id"][earlier_pos], ent["band"][later_pos]
            need = jaccard_needed(s, c.length[later])
            near = near_at_head(c.signatures(later, HEAD), c.signatures(earlier, HEAD), need)  # most fail here
            later, earlier, band, need = later[near], earlier[near], band[near], need[near]
            sl, se = c.signatures(later), c.signatures(earlier)
            ok = share(sl, se) >= need  # the head was looked at above
            # a pair sharing several bands is found in each: it counts in its first shared band only
            eq = sl[ok] == se[ok]
            mine = eq.reshape(eq.shape[0], s.bands, s.rows).all(axis=2).argmax(axis=1) == band[ok]
            self.stats["checked_pairs"] += later.size
            ok[ok] = mine
            later_out.append(later[ok])
            earlier_out.append(earlier[ok])
            memory.sample()
        return self._out(later_out, earlier_out)

    def edit_pairs(self, part: int) -> tuple[np.ndarray, np.ndarray]:
        c, s = self.corpus, self.settings
        piece, probe = c.entries("piece", part), c.entries("probe", part)
        self.stats["edit_entries"] += piece.size + probe.size
        if piece.size == 0 or probe.size == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        piece = piece[np.lexsort((c.rank[piece["id"]], piece["key"]))]
        pkey = piece["key"]
        first = np.r_[True, pkey[1:] != pkey[:-1]]
        ukeys, ustart = pkey[first], np.flatnonzero(first)
        krank = np.cumsum(first) - 1
        # sorted needles (searchsorted walks the keys once), in corpus order within a key: the same chunks
        # and counters for any number of split tasks
        probe = probe[np.lexsort((c.rank[probe["id"]], probe["key"]))]
        qr = np.searchsorted(ukeys, probe["key"])
        hit = qr < ukeys.size
        hit[hit] = ukeys[qr[hit]] == probe["key"][hit]
        probe, qr = probe[hit], qr[hit]
        # earlier pieces of the probe's key: the group's entries ranked before the probing document
        base = np.int64(c.n + 1)
        hi = np.searchsorted(krank * base + c.rank[piece["id"]], qr * base + c.rank[probe["id"]], "left")
        lo = ustart[qr]
        cnt = np.minimum(np.maximum(hi - lo, 0), s.holders)
        later_out, earlier_out = [], []
        for a, b in _chunks(cnt):
            rows, earlier_pos = _expand(lo[a:b], cnt[a:b])
            if rows.size == 0:
                continue
            later, earlier = probe["id"][rows + a], piece["id"][earlier_pos]
            self.stats["candidate_pairs"] += later.size
            code = distinct(later * base + earlier)  # a pair may share several pieces
            later, earlier = code // base, code % base
            allowed = s.allowed_edits(np.maximum(c.length[later], c.length[earlier]))
            near = np.bitwise_count(c.chars[later] ^ c.chars[earlier]) <= 2 * allowed  # most fail this cheap bound
            later, earlier = later[near], earlier[near]
            self.stats["checked_pairs"] += later.size
            ids = distinct(np.r_[later, earlier])
            text = np.array(c.key_texts(ids), dtype=object)
            ok = within_edits(s, text[np.searchsorted(ids, later)].tolist(), text[np.searchsorted(ids, earlier)].tolist(),
                              np.maximum(c.length[later], c.length[earlier]))
            later_out.append(later[ok])
            earlier_out.append(earlier[ok])
            memory.sample()
        return self._out(later_out, earlier_out)

    def _out(self, later: list[np.ndarray], earlier: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if not later:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        later, earlier = np.concatenate(later), np.concatenate(earlier)
        self.stats["similar_pairs"] += later.size
        return later, earlier
