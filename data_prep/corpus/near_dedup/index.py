"""The kept documents that later ones are compared with: band keys -> kept ordinal, signatures, references.

Kept documents get ordinals 0, 1, 2, ... in corpus order, so "the earliest kept match"
is the smallest ordinal. Two interchangeable stores:

- MemoryIndex (default): band keys in sorted numpy runs merged like an LSM tree (a run
  merges into the one before while that is at most _RUN_RATIO times larger, so a handful
  of runs, each searched with searchsorted; a key may hold many ordinals, which a hash
  table with probing handles badly: templated texts share bands), the signatures in one
  growing uint16 array, references as strings. Per kept document: 12 bytes per band + 2
  bytes per hash + ~90 bytes of id/location, i.e. about 800 bytes at 32 bands x 5 rows
  (8 GB per 10 M kept documents), plus up to 2x the largest run transiently while merging.
- SqliteIndex (on_disk): the same in one sqlite file under the stage dir, with a fixed
  page cache (256 MB); RAM stays bounded whatever the corpus size, at the price of
  B-tree inserts and joins per batch (~8x slower: 15.6 s vs 1.9 s per 100k reviews). It
  checks every holder of a band key (no _HOLDERS cap), so on heavily templated corpora a
  rare decision may differ from MemoryIndex's; the tests find none on 5,000 reviews.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

_REF_SEP = "\x1f"  # unit separator between id and location in a stored reference
# A band key held by more kept documents than this (a phrase every templated review shares) yields
# only its earliest holders per run as candidates: on the 500k-review benchmark 64 cuts the pairs to
# check by a third and changes no decision (16 changes 2 of 103k).
_HOLDERS = 64
_RUN_RATIO = 2  # a larger ratio: fewer runs to search, more merging; 2 measured fastest (4: +8%)


def _pairs(qdoc: np.ndarray, lo: np.ndarray, hi: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand [lo, hi) ranges of `values` into (query doc, value) pairs."""
    cnt = hi - lo
    total = int(cnt.sum())
    if total == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rep = np.repeat(np.arange(cnt.size), cnt)
    within = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    return qdoc[rep].astype(np.int64), values[lo[rep] + within].astype(np.int64)


class MemoryIndex:
    def __init__(self, num_hashes: int):
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted uint64 keys, uint32 ordinals)
        self.sigs = np.empty((1024, num_hashes), dtype=np.uint16)
        self.refs: list[str] = []

    def __len__(self) -> int:
        return len(self.refs)

    def candidates(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(batch row, kept ordinal) for every band key of `keys` [m, bands] held by a kept document;
        a pair sharing several bands comes several times."""
        flat = keys.ravel()
        order = np.argsort(flat)  # sorted needles: searchsorted walks each run once, cache-friendly
        flat = flat[order]
        qdoc = np.repeat(np.arange(keys.shape[0]), keys.shape[1])[order]
        docs, ords = [], []
        for run_keys, run_ords in self.runs:
            lo = np.searchsorted(run_keys, flat, "left")
            hit = np.flatnonzero(run_keys[np.minimum(lo, run_keys.size - 1)] == flat)
            if hit.size == 0:
                continue
            lo = lo[hit]
            # a key may belong to many kept documents (templated texts share bands): the earliest
            # _HOLDERS of each run are candidates (enough: a real copy shares several bands)
            hi = np.minimum(np.searchsorted(run_keys, flat[hit], "right"), lo + _HOLDERS)
            d, o = _pairs(qdoc[hit], lo, hi, run_ords)
            docs.append(d)
            ords.append(o)
        if not docs:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(docs), np.concatenate(ords)

    def signatures(self, ords: np.ndarray, hashes: int | None = None) -> np.ndarray:
        """Signatures of kept documents (only the first `hashes` values, if given)."""
        return self.sigs[ords] if hashes is None else self.sigs[ords, :hashes]

    def ref(self, ord_: int) -> tuple[str, str]:
        doc_id, loc = self.refs[ord_].split(_REF_SEP, 1)
        return doc_id, loc

    def add(self, keys: np.ndarray, sigs: np.ndarray, refs: list[tuple[str, str]]) -> None:
        m = len(refs)
        if m == 0:
            return
        first = len(self.refs)
        while first + m > self.sigs.shape[0]:
            self.sigs = np.concatenate([self.sigs, np.empty_like(self.sigs)])
        self.sigs[first:first + m] = sigs
        self.refs.extend(f"{i}{_REF_SEP}{loc}" for i, loc in refs)
        ords = np.repeat(np.arange(first, first + m, dtype=np.uint32), keys.shape[1])
        flat = keys.ravel()
        order = np.argsort(flat, kind="stable")
        self.runs.append((flat[order], ords[order]))
        while len(self.runs) >= 2 and self.runs[-2][0].size <= _RUN_RATIO * self.runs[-1][0].size:
            (k2, o2), (k1, o1) = self.runs.pop(), self.runs.pop()
            k, o = np.concatenate([k1, k2]), np.concatenate([o1, o2])
            order = np.argsort(k, kind="stable")  # timsort: two sorted runs merge in linear time
            self.runs.append((k[order], o[order]))

    def close(self) -> None:
        self.runs, self.refs = [], []


class SqliteIndex:
    def __init__(self, path: Path, num_hashes: int):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # state of an earlier run would make its documents "earlier"
        self.num_hashes = num_hashes
        self.db = sqlite3.connect(str(path))
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-262144", "temp_store=MEMORY"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE bands (key INTEGER NOT NULL, ord INTEGER NOT NULL, "
                        "PRIMARY KEY (key, ord)) WITHOUT ROWID")
        self.db.execute("CREATE TABLE kept (ord INTEGER PRIMARY KEY, id TEXT, location TEXT, sig BLOB)")
        self.db.execute("CREATE TEMP TABLE q (key INTEGER NOT NULL, doc INTEGER NOT NULL)")
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def candidates(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.n == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        flat = keys.ravel().view(np.int64).tolist()  # sqlite integers are signed 64-bit
        qdoc = np.repeat(np.arange(keys.shape[0]), keys.shape[1]).tolist()
        self.db.execute("DELETE FROM q")
        self.db.executemany("INSERT INTO q VALUES (?, ?)", zip(flat, qdoc))
        rows = self.db.execute("SELECT q.doc, bands.ord FROM q JOIN bands ON bands.key = q.key").fetchall()
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        arr = np.array(rows, dtype=np.int64)
        return arr[:, 0], arr[:, 1]

    def signatures(self, ords: np.ndarray, hashes: int | None = None) -> np.ndarray:
        uniq, inv = np.unique(ords, return_inverse=True)
        found: dict[int, bytes] = {}
        ids = uniq.tolist()
        for s in range(0, len(ids), 900):  # stay under sqlite's bound-parameter limit
            chunk = ids[s:s + 900]
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(f"SELECT ord, sig FROM kept WHERE ord IN ({marks})", chunk).fetchall())
        table = np.frombuffer(b"".join(found[i] for i in ids), dtype=np.uint16).reshape(len(ids), self.num_hashes)
        return table[inv.ravel()] if hashes is None else table[inv.ravel(), :hashes]

    def ref(self, ord_: int) -> tuple[str, str]:
        return self.db.execute("SELECT id, location FROM kept WHERE ord = ?", (ord_,)).fetchone()

    def add(self, keys: np.ndarray, sigs: np.ndarray, refs: list[tuple[str, str]]) -> None:
        m = len(refs)
        if m == 0:
            return
        ords = range(self.n, self.n + m)
        self.db.executemany("INSERT INTO kept VALUES (?, ?, ?, ?)",
                            ((o, i, loc, s.tobytes()) for o, (i, loc), s in zip(ords, refs, sigs)))
        flat = keys.ravel().view(np.int64).tolist()
        ord_rep = np.repeat(np.arange(self.n, self.n + m), keys.shape[1]).tolist()
        self.db.executemany("INSERT OR IGNORE INTO bands VALUES (?, ?)", zip(flat, ord_rep))
        self.db.commit()
        self.n += m

    def close(self) -> None:
        self.db.close()
