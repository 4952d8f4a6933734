"""Stage manifests: the only thing a stage trusts about the stages before it.

`<run_dir>/<stage>/manifest.json` records the stage's resolved config, its inputs
and outputs with sha256, metrics, package versions, git commit and timing. A
stage is sealed (status `complete`) only after all its outputs are written and
hashed; readers re-hash those outputs and refuse a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.hashing import sha256_file
from kgov_train import assets
from kgov_train.errors import ManifestError
from kgov_train.run_folder import MANIFEST

__all__ = ["MANIFEST", "Manifest", "ManifestError", "fingerprint", "hash_entries", "verify_external_inputs",
           "verify_outputs"]
_PACKAGES = (
    "kgov-train", "torch", "deepspeed", "transformers", "trl", "peft", "accelerate",
    "datatrove", "sentencepiece", "tokenizers", "hydra-core", "omegaconf", "numpy",
)


def list_files(path: Path) -> list[Path]:
    """The file itself, or every file below a folder, in a stable order."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


# sha256 by (path, inode, size, mtime) in this process: a base model's weights, hashed when the base stage is
# planned, are re-checked by every stage that reads them in the same chain without reading 15 GB again.
_HASHED: dict[tuple[str, int, int, int], str] = {}


PROGRESS_BYTES = 256 << 20  # files to hash at least this large in all get a progress bar (a 15 GB base model)


def _memo_key(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns


def file_sha256(path: Path, progress=None) -> str:
    key = _memo_key(path)
    if key not in _HASHED:
        _HASHED[key] = sha256_file(path, progress=progress)
    return _HASHED[key]


def hash_files(files: list[Path], what: str) -> list[str]:
    """sha256 of each file (memoised), with a progress bar over the bytes still to read when they are many."""
    todo = sum(f.stat().st_size for f in files if _memo_key(f) not in _HASHED)
    bar = tqdm(total=todo, unit="B", unit_scale=True, unit_divisor=1024, desc=f"sha256 {what}") \
        if todo >= PROGRESS_BYTES else None
    try:
        return [file_sha256(f, bar.update if bar is not None else None) for f in files]
    finally:
        if bar is not None:
            bar.close()


def hash_entries(paths: list[Path], relative_to: Path | None = None) -> list[dict[str, Any]]:
    entries = []
    for top in paths:
        files = list_files(top)
        for f, sha in zip(files, hash_files(files, top.name)):
            name = str(f.relative_to(relative_to)) if relative_to else str(f)
            entries.append({"path": name, "sha256": sha, "bytes": f.stat().st_size})
    return entries


def verify_external_inputs(m: Manifest, stage_dir: Path) -> list[dict[str, Any]]:
    """The files from outside the run folder a sealed stage took in (the base stage: the imported model's), each
    re-hashed: a file changed since is refused, naming it."""
    entries = [i for i in m.inputs if "from_stage" not in i]
    for entry in entries:
        path = Path(entry["path"])
        if not path.is_file():
            raise ManifestError(f"{path}: read by stage '{m.stage}' ({stage_dir / MANIFEST}) but missing now; "
                                f"restore it or rerun stage '{m.stage}' with force=true")
    shas = hash_files([Path(e["path"]) for e in entries], f"{m.stage} inputs")
    for entry, sha in zip(entries, shas):
        if sha != entry["sha256"]:
            raise ManifestError(f"{entry['path']}: changed since stage '{m.stage}' verified it (sha256 "
                                f"{entry['sha256'][:12]}… in {stage_dir / MANIFEST}); rerun stage '{m.stage}' with "
                                "force=true to import it again")
    return entries


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def git_commit() -> str | None:
    """The commit of the source checkout kgov-train runs from; None for a wheel install (its site-packages may sit
    inside some other repository, whose commit would be recorded)."""
    repo = assets.SOURCE_ROOT
    if assets.ROOT != repo or not (repo / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def fingerprint(config: dict[str, Any], inputs: list[dict[str, Any]]) -> str:
    blob = json.dumps({"config": config, "inputs": [(i["path"], i["sha256"]) for i in inputs]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Manifest:
    stage: str
    status: str = "running"  # running | complete | failed | interrupted (preempted, spike rollback: rerun resumes)
    fingerprint: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)
    git_commit: str | None = field(default_factory=git_commit)
    host: str = field(default_factory=socket.gethostname)
    started_at: str = field(default_factory=lambda: _now())
    ended_at: str | None = None
    wall_seconds: float | None = None
    error: str | None = None
    cache_key: str | None = None  # the fingerprint without the run folder in its paths (kgov_train/stage_cache.py)
    reused_from: dict[str, Any] | None = None  # filled from the stage cache: the entry, where it was computed

    @staticmethod
    def load(stage_dir: Path) -> "Manifest | None":
        path = stage_dir / MANIFEST
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Manifest(**data)
        except (json.JSONDecodeError, TypeError) as e:
            raise ManifestError(f"{path}: unreadable manifest ({e}); delete the stage folder or rerun with force=true") from e

    def save(self, stage_dir: Path) -> None:
        stage_dir.mkdir(parents=True, exist_ok=True)
        tmp = stage_dir / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, stage_dir / MANIFEST)  # atomic: a reader never sees half a manifest

    def finish(self, status: str, started: float) -> None:
        self.status = status
        self.ended_at = _now()
        self.wall_seconds = round(time.time() - started, 2)


def verify_outputs(stage_dir: Path) -> Manifest:
    """Load a sealed upstream manifest and check its outputs still hash the same."""
    m = Manifest.load(stage_dir)
    if m is None:
        raise ManifestError(f"{stage_dir}: no manifest.json; run stage '{stage_dir.name}' first")
    if m.status != "complete":
        raise ManifestError(f"{stage_dir / MANIFEST}: stage '{m.stage}' is {m.status}, not complete; run it first")
    for entry in m.outputs:
        path = stage_dir / entry["path"]
        if not path.exists():
            raise ManifestError(f"{path}: listed in {stage_dir / MANIFEST} but missing; rerun stage '{m.stage}' with force=true")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ManifestError(
                f"{path}: sha256 {actual[:12]}… differs from {entry['sha256'][:12]}… sealed in "
                f"{stage_dir / MANIFEST}; the file changed after stage '{m.stage}' ran. Rerun it with force=true"
            )
    return m


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
