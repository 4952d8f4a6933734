"""The content-addressed stage cache: a stage computed once serves every run that plans it with the same key.

`<cache_dir>/<key>/` holds a sealed stage folder (its manifest.json, its outputs and the other files it wrote,
checkpoints/ left out) and `cache.json` (where it was computed). The key is the stage's fingerprint with the run
folder taken out of its inputs' paths: the resolved config sections the stage depends on, and every input file's
sha256 (upstream outputs by their place in the run folder). Two runs of a sweep whose stage has the same config
and the same inputs get the same key wherever their run folders lie.

- `publish`: a stage sealed in a run is linked (hard links; a copy across file systems) into a temporary folder of
  the cache, which is renamed to its key: readers never see half an entry. The first entry of a key stays; a
  `force=true` rerun replaces it.
- `fill`: a planned stage whose key has an entry has every output of the entry re-hashed against the entry's
  manifest, then its folder filled from it (hard links, else copies). A mismatch (a cached file changed after it
  was sealed) is refused with a warning naming the file: the entry is discarded and the stage is computed again
  in the run (and published afresh); the run's stage folder is left as it was until then.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from kgov_train.errors import ManifestError
from kgov_train.manifest import Manifest, fingerprint, verify_outputs
from kgov_train.run_folder import CHECKPOINTS, MANIFEST, TRACEBACK

log = logging.getLogger("kgov_train")

SWEEP_CACHE = ".stage-cache"  # under a sweep folder (kgov-train -m): the cache of its runs
ENTRY_INFO = "cache.json"
_LEFT_OUT = {CHECKPOINTS, TRACEBACK, ENTRY_INFO}  # checkpoints: big and of no use once the stage is sealed


def cache_key(config: dict[str, Any], inputs: list[dict[str, Any]], run_dir: Path) -> str:
    """The stage's fingerprint with input paths inside the run folder made relative to it."""
    prefixes = {str(run_dir).rstrip("/") + "/", str(run_dir.resolve()) + "/"}

    def rel(path: str) -> str:
        for p in prefixes:
            if path.startswith(p):
                return "<run_dir>/" + path[len(p):]
        return path

    return fingerprint(config, [{"path": rel(str(i["path"])), "sha256": i["sha256"]} for i in inputs])


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, dst)


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _LEFT_OUT or n.endswith(".tmp")}


def _discard(entry: Path) -> None:
    """Remove an entry so that no reader finds it half removed: rename it away first."""
    trash = entry.with_name(f".trash-{entry.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(entry, trash)
    except OSError:
        return  # gone already (another process discarded or replaced it)
    shutil.rmtree(trash, ignore_errors=True)


def publish(cache_dir: Path, stage_dir: Path, m: Manifest, replace: bool = False) -> Path | None:
    """Put a sealed stage into the cache under its key; the entry (None when the manifest has no key)."""
    if not m.cache_key or m.status != "complete":
        return None
    entry = cache_dir / m.cache_key
    if entry.exists() and not replace:
        return entry  # the first one stays: the same key, the same outputs
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-{m.cache_key[:16]}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(stage_dir, tmp, copy_function=_link_or_copy, ignore=_ignore)
        info = {"key": m.cache_key, "stage": m.stage, "stage_dir": str(stage_dir.resolve()),
                "published_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / ENTRY_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if replace and entry.exists():
            _discard(entry)
        try:
            os.rename(tmp, entry)  # atomic; fails when another process published the same key meanwhile
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return entry
    except OSError as e:  # a full or read-only cache must not fail the run that computed the stage
        log.warning("%s: not published to the stage cache %s: %s", m.stage, cache_dir, e)
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    log.info("%s: published to the stage cache as %s", m.stage, entry)
    return entry


def fill(cache_dir: Path, stage_dir: Path, planned: Manifest) -> Manifest | None:
    """Fill `stage_dir` from the entry of the planned manifest's key and seal it there; None when there is no
    usable entry (none, incomplete, or refused: then the stage folder is left empty and the entry discarded)."""
    entry = cache_dir / (planned.cache_key or "-")
    if not planned.cache_key or not (entry / MANIFEST).is_file():
        return None
    try:
        cached = Manifest.load(entry)
        info = json.loads((entry / ENTRY_INFO).read_text(encoding="utf-8"))
    except (ManifestError, OSError, ValueError):
        return None
    if cached is None or cached.status != "complete" or cached.cache_key != planned.cache_key:
        return None
    started = time.time()
    try:
        verify_outputs(entry)  # every output re-hashed; the run's folder is linked to these very files
    except ManifestError as e:
        log.warning("%s: stage cache entry %s refused, computing the stage again: %s", planned.stage, entry, e)
        _discard(entry)
        return None
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    try:
        shutil.copytree(entry, stage_dir, copy_function=_link_or_copy, ignore=_ignore)
    except OSError as e:  # discarded meanwhile, or no room for the copy: computed here instead
        log.warning("%s: could not fill %s from the stage cache (%s); computing the stage", planned.stage,
                    stage_dir, e)
        shutil.rmtree(stage_dir, ignore_errors=True)
        return None
    m = planned
    m.outputs, m.metrics = cached.outputs, cached.metrics
    m.reused_from = {"entry": str(entry.resolve()), "stage_dir": info.get("stage_dir"),
                     "started_at": cached.started_at, "wall_seconds": cached.wall_seconds}
    m.finish("complete", started)
    m.save(stage_dir)  # replaces the linked manifest of the entry, which stays as it was
    log.info("%s: filled from the stage cache %s (computed in %s)", m.stage, entry, info.get("stage_dir"))
    return m


SWEEP_RECORD = "sweep.json"


def record_sweep_job(sweep_dir: Path, job: int, overrides: list[str], run_dir: str, **extra: Any) -> None:
    """Add (or update) a job of a sweep in `<sweep_dir>/sweep.json`: {"sweep_dir", "jobs": [{"job", "overrides",
    "run_dir", ...}]}, jobs by number. The jobs of a local sweep run one after another; the file is replaced
    atomically."""
    path = sweep_dir / SWEEP_RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    jobs = {int(j["job"]): j for j in data.get("jobs", []) if isinstance(j, dict) and "job" in j}
    jobs[job] = {"job": job, "overrides": overrides, "run_dir": run_dir, **extra}
    data = {"sweep_dir": str(sweep_dir.resolve()), "jobs": [jobs[k] for k in sorted(jobs)]}
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SWEEP_RECORD}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
