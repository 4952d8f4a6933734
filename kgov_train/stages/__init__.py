"""The chain of stages, in order, and what each one depends on.

Each stage module exposes `run(ctx) -> StageResult` and, when it reads files
from outside the run folder, `external_inputs(cfg) -> list[Path]`. Modules are
imported only when their stage runs, so the data stages never import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig


@dataclass
class StageContext:
    cfg: DictConfig
    run_dir: Path
    stage_dir: Path
    upstream: dict[str, Path]  # stage name -> its sealed folder
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class StageResult:
    outputs: list[str]  # files or folders, relative to the stage folder, hashed into the manifest
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]  # upstream stages whose outputs are this stage's inputs
    config_keys: tuple[str, ...]  # config sections that decide the stage's result
    distributed: bool  # launched under torchrun (one process per device)
    module: str

    def load(self):
        return importlib.import_module(self.module)

    def run(self, ctx: StageContext) -> StageResult:
        return self.load().run(ctx)

    def external_inputs(self, cfg: DictConfig) -> list[Path]:
        fn: Callable[[DictConfig], list[Path]] | None = getattr(self.load(), "external_inputs", None)
        return fn(cfg) if fn else []


_TRAIN_KEYS = ("deepspeed", "seed", "cluster.precision")

STAGES: dict[str, Stage] = {
    s.name: s
    for s in [
        Stage("data", (), ("data",), False, "kgov_train.stages.data"),
        # data.sources: their weights shape the tokenizer's sample and the shards' mixture, not data/clean
        Stage("tokenizer", ("data",), ("tokenizer", "data.sources", "seed"), False, "kgov_train.stages.tokenizer"),
        Stage("shards", ("data", "tokenizer"), ("shards", "data.sources"), False, "kgov_train.stages.shards"),
        Stage("pretrain", ("tokenizer", "shards"), ("pretrain", "model") + _TRAIN_KEYS, True, "kgov_train.stages.pretrain"),
        Stage("sft", ("pretrain",), ("sft",) + _TRAIN_KEYS, True, "kgov_train.stages.sft"),
        Stage("dpo", ("sft",), ("dpo",) + _TRAIN_KEYS, True, "kgov_train.stages.dpo"),
        # The evaluated models' final/ folders (eval.model_stage, eval.stages) are its external inputs.
        Stage("eval", ("shards",), ("eval", "pretrain.seq_len"), False, "kgov_train.stages.eval"),
    ]
}
