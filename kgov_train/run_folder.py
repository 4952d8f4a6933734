"""The run folder's contract: the stages and their order, the names of what each stage writes, tolerant readers of
those files, and the context a stage runs in. Every layer reads the run folder through here.

    <run_dir>/<stage>/manifest.json          sealed by the pipeline (kgov_train.manifest)
    <run_dir>/<training stage>/final/        the model; checkpoints/ its resumable state; metrics.jsonl its steps
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

# Every stage in chain order, and the stages each one reads on the scratch route. Named SFT stages (sft_general,
# sft_domain, ...) take the place of `sft` when a recipe has `sft_stages` (kgov_train.stages.chain).
CHAIN = ("base", "data", "tokenizer", "shards", "pretrain", "sft", "dpo", "eval")
NEEDS: dict[str, tuple[str, ...]] = {"base": (), "data": (), "tokenizer": ("data",), "shards": ("data", "tokenizer"),
                                     "pretrain": ("tokenizer", "shards"), "sft": ("pretrain",), "dpo": ("sft",),
                                     "eval": ("shards",)}
# The routes (the recipe's `route`): the stages each runs, and what differs from NEEDS on it.
#   scratch   train a tokenizer and a model from the corpus
#   cpt       continued pretraining of an imported foundation model (`base`) on the corpus, then SFT, DPO
#   finetune  SFT and DPO of an imported foundation model; no corpus stages
ROUTES: dict[str, tuple[str, ...]] = {
    "scratch": ("data", "tokenizer", "shards", "pretrain", "sft", "dpo", "eval"),
    "cpt": CHAIN,
    "finetune": ("base", "sft", "dpo", "eval"),
}
ROUTE_NEEDS: dict[str, dict[str, tuple[str, ...]]] = {
    "scratch": {},
    "cpt": {"tokenizer": ("data", "base"), "pretrain": ("tokenizer", "shards", "base"), "eval": ("shards", "base")},
    "finetune": {"sft": ("base",), "eval": ("base",)},
}
BASE_REPORT = "base.json"  # the base stage's verification report; its "path" is the imported model folder
TRAINING = ("pretrain", "sft", "dpo")
SFT_NAME = re.compile(r"^sft_[a-z0-9_]+$")

MANIFEST = "manifest.json"
TRACEBACK = "traceback.txt"
FINAL = "final"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"


def is_training(stage: str) -> bool:
    return stage in TRAINING or bool(SFT_NAME.match(stage))


def read_json(path: Path) -> Any:
    """The file's JSON, None when it does not exist; a file that is not JSON raises ValueError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def read_manifest(stage_dir: Path) -> dict[str, Any]:
    """A stage's manifest as a plain dict for reports ({} when missing or unreadable). The pipeline's sealed view,
    with hash checks, is kgov_train.manifest."""
    try:
        m = read_json(stage_dir / MANIFEST)
    except (OSError, ValueError):
        return {}
    return m if isinstance(m, dict) else {}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSONL log ([] when missing): a line cut short by a kill is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def model_folder(stage_dir: Path) -> Path:
    """The model a stage hands on: a training stage's final/, or the folder the base stage imported (base.json)."""
    if stage_dir.name != "base":
        return stage_dir / FINAL
    report = read_json(stage_dir / BASE_REPORT)
    if not isinstance(report, dict) or not report.get("path"):
        raise ValueError(f"{stage_dir / BASE_REPORT}: no imported model folder recorded ('path'); rerun the base stage")
    return Path(report["path"])


@dataclass
class StageContext:
    cfg: DictConfig
    run_dir: Path
    stage_dir: Path
    upstream: dict[str, Path]  # stage name -> its sealed folder
    rank: int = 0
    world_size: int = 1

    @property
    def name(self) -> str:
        return self.stage_dir.name

    @property
    def base(self) -> Path:
        """The model this training stage starts from: the final/ of the one training stage it follows (sft, dpo), or
        the imported model folder when it follows the base stage."""
        (upstream,) = self.upstream.values()
        return model_folder(upstream)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class StageResult:
    outputs: list[str]  # files or folders, relative to the stage folder, hashed into the manifest
    metrics: dict[str, Any] = field(default_factory=dict)
