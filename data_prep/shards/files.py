"""Token files of one split of one input file: <split>-<input no>-<part>.{bin,idx.npy,docs.npy}.

Each clean input file gets its own token files, so a finished input file never has to be redone (resume) and the
bytes of its outputs depend on that file alone. A part rolls over before a document would take it past
max_tokens (so only a single document longer than that makes a larger part); a document never spans two parts.
Every file is fsync'ed on close: the progress record that follows must not point at data still in the page cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_prep.shards.encode import META


def save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class SplitWriter:
    out_dir: Path
    split: str
    dtype: np.dtype
    max_tokens: int
    input_no: int = 0
    input_name: str = ""
    files: list[dict] = field(default_factory=list)
    _f: object = None
    _ends: list[np.ndarray] = field(default_factory=list)
    _meta: list[np.ndarray] = field(default_factory=list)
    _tokens: int = 0

    def add(self, tokens: np.ndarray, lengths: np.ndarray, meta: np.ndarray | None = None) -> None:
        """Documents back to back in `tokens`, `lengths` tokens each; meta: META per document (zeros if None)."""
        lengths = np.asarray(lengths, np.int64)
        meta = np.zeros(len(lengths), META) if meta is None else meta
        tokens = np.asarray(tokens).astype(self.dtype.newbyteorder("<"), copy=False)
        ends = np.cumsum(lengths)
        done = 0  # documents written
        while done < len(lengths):
            if self._f is None:
                self._open()
            base = int(ends[done - 1]) if done else 0
            # documents that still fit in this part; at least one if the part is empty
            fit = int(np.searchsorted(ends[done:] - base, self.max_tokens - self._tokens, side="right"))
            if fit == 0 and self._tokens:
                self._close_file()
                continue
            take = max(fit, 1)
            stop = int(ends[done + take - 1])
            tokens[base:stop].tofile(self._f)
            self._ends.append(self._tokens + ends[done:done + take] - base)
            self._meta.append(meta[done:done + take])
            self._tokens += stop - base
            done += take

    def _open(self) -> None:
        stem = f"{self.split}-{self.input_no:05d}-{len(self.files):03d}"
        self._f = open(self.out_dir / f"{stem}.bin", "wb")
        self.files.append({"path": f"{stem}.bin", "index": f"{stem}.idx.npy", "docs": f"{stem}.docs.npy",
                           "input": self.input_name, "tokens": 0, "documents": 0})

    def _close_file(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        entry = self.files[-1]
        ends = np.concatenate(self._ends) if self._ends else np.zeros(0, np.int64)
        save_npy(self.out_dir / entry["index"], ends.astype(np.int64))
        save_npy(self.out_dir / entry["docs"], np.concatenate(self._meta) if self._meta else np.zeros(0, META))
        entry["tokens"], entry["documents"] = self._tokens, len(ends)
        self._f, self._ends, self._meta, self._tokens = None, [], [], 0

    def close(self) -> list[dict]:
        if self._f is not None:
            self._close_file()
        return self.files
