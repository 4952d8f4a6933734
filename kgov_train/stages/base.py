"""base stage: a local foundation model folder (`base.path`) -> <run_dir>/base/base.json, after verifying it
(kgov_train.foundation.verify_base).

The weights are not copied into the run folder: every file of base.path is an external input, so the pipeline
streams its sha256 into this stage's manifest (`inputs`) and a changed file reruns the stage and, through base.json,
invalidates the stages after it. run() takes those hashes from the manifest rather than reading 15 GB twice.
A base.path inside an air-gap bundle entry (kgov_train.carry, `kgov-train assets pack`) is checked against the
bundle's assets.json with those same hashes (a file that differs fails the stage, naming it) and the bundle is
recorded in base.json and the manifest's metrics (`bundle`: bundle, entry, bundle hash, source id, revision, licence).
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from kgov_train.foundation import base_problems, folder_files, local_folder, verify_base
from kgov_train.manifest import Manifest
from kgov_train.run_folder import StageContext, StageResult

REPORT = "base.json"


def check(cfg: DictConfig, name: str = "base") -> list[str]:
    """The cheap checks: a local folder (not a hub id) with config.json, a tokenizer, sound safetensors weights,
    no pickle or remote code unless allowed, a named model and licence. Reads no weight, loads no torch."""
    b = cfg.base
    return base_problems(b.path, name=b.name, license=b.license, allow_pickle=bool(b.allow_pickle),
                         trust_remote_code=bool(b.trust_remote_code),
                         allow_unknown_license=bool(b.allow_unknown_license))


def external_inputs(cfg: DictConfig, name: str = "base") -> list[Path]:
    """Every file of base.path (the pipeline hashes them into the manifest); none when it is not a local folder
    (check() says why)."""
    folder = local_folder(cfg.base.path)
    return folder_files(folder) if folder is not None and folder.is_dir() else []


def run(ctx: StageContext) -> StageResult:
    b = ctx.cfg.base
    manifest = Manifest.load(ctx.stage_dir)
    known = {i["path"]: i["sha256"] for i in (manifest.inputs if manifest else []) if "from_stage" not in i}
    report = verify_base(b.path, name=b.name, license=b.license, allow_pickle=bool(b.allow_pickle),
                         trust_remote_code=bool(b.trust_remote_code),
                         allow_unknown_license=bool(b.allow_unknown_license), known_hashes=known)
    tmp = ctx.stage_dir / (REPORT + ".tmp")
    tmp.write_text(report.to_json(), encoding="utf-8")
    os.replace(tmp, ctx.stage_dir / REPORT)
    return StageResult(outputs=[REPORT], metrics=report.metrics())
