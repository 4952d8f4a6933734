"""The hashes every part of the pipeline shares: sha256 of files (streamed) for manifests, and the document-id hash
that splits and samples documents (tokenizer sample, validation split) the same way everywhere."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable


def sha256_file(path: str | Path, chunk: int = 1 << 20, progress: Callable[[int], Any] | None = None) -> str:
    """Streamed in `chunk` bytes (a 15 GB checkpoint is never read whole); progress(n) after each chunk read."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            if progress is not None:
                progress(n)
    return h.hexdigest()


def id_hash(doc_id: str) -> int:
    """A document id's stable 64-bit hash: the same document is held out (or sampled) in every stage."""
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")
