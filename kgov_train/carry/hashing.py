"""Streamed sha256 (1 MiB chunks: a 15 GB shard is never read whole), optionally copying the bytes as they are
read, with one tqdm progress bar over the bytes (stderr)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.hashing import sha256_file as data_prep_sha256

CHUNK = 1 << 20


def bar(total: int, desc: str, progress: bool = True) -> Any:
    """A bar over `total` bytes to stderr, or None (no bar) when not wanted."""
    if not progress or total <= 0:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)


def sha256_file(path: Path, progress: Any = None) -> str:
    """data_prep.hashing's streamed sha256, advancing a tqdm bar (or None) by the bytes read."""
    return data_prep_sha256(path, CHUNK, progress.update if progress is not None else None)


def copy_and_hash(src: Path, dst: Path, git_sha1: bool = False, progress: Any = None) -> tuple[str, int, str | None]:
    """Copy src to dst (a new file; the modification time kept), hashing the bytes read: (sha256, bytes, the git
    blob sha1 when asked: what the hub's etag of a small, non-LFS file is)."""
    size = src.stat().st_size
    h = hashlib.sha256()
    g = hashlib.sha1(f"blob {size}\0".encode()) if git_sha1 else None
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    n_total = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb", buffering=0) as fin, open(dst, "xb") as fout:
        while n := fin.readinto(buf):
            h.update(view[:n])
            if g is not None:
                g.update(view[:n])
            fout.write(view[:n])
            n_total += n
            if progress is not None:
                progress.update(n)
        fout.flush()
        os.fsync(fout.fileno())
    shutil.copystat(src, dst)
    return h.hexdigest(), n_total, g.hexdigest() if g is not None else None
