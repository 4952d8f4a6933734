"""The near-dedup work folder (`<stage>/work/near/`): what each pass leaves for the next.

Split task t (one row per document with a non-empty key, in the task's corpus order):
  meta/<t>.bin        META rows: corpus order, hash of the whole key, key length, offset of the key,
                      the set of its characters (64 hashed buckets: a cheap bound on edit distance)
  sigs/<t>.bin        bands*rows uint16 per row (zeros for keys under min_chars: no signature)
  keys/<t>.bin        UTF-32 code points of the keys the edit rule may compare (<= short_chars + edits)
  <family>_<p>_<t>.bin  entries (hash key, row[, band]) of family band / piece / probe, hash partition p
Candidate task b (the "near" pass; partitions p with p % buckets == b):
  pairs/<b>.npy       (later, earlier) corpus orders of checked near-duplicate pairs
  links.npy           (later, first) corpus orders of documents whose key an earlier one has (task 0)

Rows are 36 bytes of meta and 2*bands*rows of signature (356 bytes at 32x5); an entry is 12 bytes
(14 with its band), bands of them per signed document and about 40 per short key (probes). All of it is removed when
the stage ends.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_prep.corpus import records as R

NEAR = "near"
META = np.dtype([("order", "<u8"), ("keyhash", "<u8"), ("length", "<u4"), ("key_at", "<u8"), ("chars", "<u8")])
ENTRY = np.dtype([("key", "<u8"), ("row", "<u4")])
BAND_ENTRY = np.dtype([("key", "<u8"), ("row", "<u4"), ("band", "<u2")])  # the band: a pair is checked once
FAMILIES = ("band", "piece", "probe")
_LINE_BITS = 40  # corpus order = file_index << 40 | line: 2**40 lines per file, 2**24 files


def order_of(metadata: dict) -> int:
    """A document's corpus position as one integer (file index, then line), comparable across tasks."""
    index, line = metadata[R.FILE_INDEX], metadata[R.LINE]
    if not (0 <= line < 1 << _LINE_BITS and 0 <= index < 1 << (64 - _LINE_BITS)):
        raise ValueError(f"{R.location(metadata)}: file index {index} / line {line} out of near-dedup's range")
    return index << _LINE_BITS | line


class Folder:
    """Paths of the work folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def meta(self, task: int) -> Path:
        return self.root / "meta" / f"{task:05d}.bin"

    def sigs(self, task: int) -> Path:
        return self.root / "sigs" / f"{task:05d}.bin"

    def keys(self, task: int) -> Path:
        return self.root / "keys" / f"{task:05d}.bin"

    def entries(self, family: str, part: int, task: int) -> Path:
        return self.root / "entries" / f"{family}_{part:04d}_{task:05d}.bin"

    def pairs(self, bucket: int) -> Path:
        return self.root / "pairs" / f"{bucket:05d}.npy"

    def links(self) -> Path:
        return self.root / "pairs" / "links.npy"

    def tasks(self) -> list[int]:
        """The split tasks that wrote their rows."""
        return sorted(int(p.stem) for p in (self.root / "meta").glob("*.bin"))


class SplitFiles:
    """Appends one split task's rows, keys and partitioned entries; every file is opened on first use."""

    def __init__(self, folder: Folder, task: int, partitions: int):
        self.folder, self.task, self.partitions = folder, task, partitions
        self.rows = 0
        self.key_chars = 0
        self._files: dict[Path, object] = {}
        self.bytes = 0

    def _write(self, path: Path, data: np.ndarray) -> None:
        f = self._files.get(path)
        if f is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = self._files[path] = open(path, "wb")  # a rerun of the task starts its files anew
        buf = data.tobytes()
        f.write(buf)
        self.bytes += len(buf)

    def add(self, meta: np.ndarray, sigs: np.ndarray, key_cp: np.ndarray) -> int:
        """Rows of a batch; returns the task row number of the first."""
        first = self.rows
        self._write(self.folder.meta(self.task), meta)
        self._write(self.folder.sigs(self.task), sigs)
        if key_cp.size:
            self._write(self.folder.keys(self.task), key_cp.astype("<u4"))
        self.rows += meta.size
        self.key_chars += key_cp.size
        return first

    def entries(self, family: str, keys: np.ndarray, rows: np.ndarray, band: np.ndarray | None = None) -> None:
        if keys.size == 0:
            return
        part = (keys % np.uint64(self.partitions)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        ent = np.empty(keys.size, ENTRY if band is None else BAND_ENTRY)
        ent["key"], ent["row"] = keys[order], rows[order]
        if band is not None:
            ent["band"] = band[order]
        counts = np.bincount(part, minlength=self.partitions)
        at = 0
        for p in np.flatnonzero(counts).tolist():
            self._write(self.folder.entries(family, p, self.task), ent[at:at + counts[p]])
            at += counts[p]

    def close(self) -> None:
        # the meta file marks the task as present even when it saw no document
        self.folder.meta(self.task).parent.mkdir(parents=True, exist_ok=True)
        self._write(self.folder.meta(self.task), np.empty(0, META))
        for f in self._files.values():
            f.close()
        self._files = {}
