"""sha256 of every file of a model folder, streamed in 1 MiB chunks (a 15 GB checkpoint is never read whole), with
one progress bar over the total bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.hashing import sha256_file

CHUNK = 1 << 20


def folder_files(folder: Path) -> list[Path]:
    """Every file below the folder, in a stable order (hidden ones too: they travel with the folder), but for a git
    clone's .git/ (its LFS objects would be a second copy of the weights, which transformers never reads)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.relative_to(folder).parts)


def hash_files(folder: Path, files: list[Path], known: dict[str, str] | None = None,
               progress: bool = True) -> list[dict[str, Any]]:
    """[{path (relative to folder), sha256, bytes}] for `files`; a file whose absolute path is in `known` (path ->
    sha256, e.g. what the pipeline hashed for the stage's manifest a moment ago) is not read again."""
    known = known or {}
    sizes = [f.stat().st_size for f in files]
    todo = sum(s for f, s in zip(files, sizes) if str(f) not in known)
    bar = None
    if progress and todo:
        bar = tqdm(total=todo, unit="B", unit_scale=True, unit_divisor=1024, desc=f"sha256 {folder.name}")
    entries = []
    try:
        for f, size in zip(files, sizes):
            sha = known.get(str(f))
            if sha is None:
                sha = sha256_file(f, CHUNK, bar.update if bar is not None else None)
            entries.append({"path": str(f.relative_to(folder)), "sha256": sha, "bytes": size})
    finally:
        if bar is not None:
            bar.close()
    return entries
