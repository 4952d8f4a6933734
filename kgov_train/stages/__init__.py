"""The chain of stages, in order, and what each one depends on.

Each stage module exposes `run(ctx) -> StageResult` and, when it reads files
from outside the run folder, `external_inputs(cfg, name) -> list[Path]` (name: the
stage's, which differs from the module's for named SFT stages), optionally with
`input_labels(cfg, name) -> {path: {key: value}}`, extra keys for those files' manifest
entries. Modules are imported only when their stage runs, so the data stages never import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from kgov_train.config.sections import sft_stage_names


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
        """The model this training stage starts from: the final/ of the one stage it follows (sft, dpo)."""
        (upstream,) = self.upstream.values()
        return upstream / "final"

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
        fn: Callable[[DictConfig, str], list[Path]] | None = getattr(self.load(), "external_inputs", None)
        return fn(cfg, self.name) if fn else []

    def input_labels(self, cfg: DictConfig) -> dict[str, dict[str, Any]]:
        """What the module adds to its external inputs' manifest entries, by path (the data stage: source, file)."""
        fn = getattr(self.load(), "input_labels", None)
        return fn(cfg, self.name) if fn else {}


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


def chain(cfg: DictConfig) -> list[Stage]:
    """The run's stages in order: STAGES, with `sft` replaced by the named SFT stages of `sft_stages` when the recipe
    has them (sft_general, then sft_domain, ...), each from the previous one's final/, and dpo after the last."""
    names = sft_stage_names(cfg)
    if names == ["sft"]:
        return list(STAGES.values())
    out, prev = [], "pretrain"
    for stage in STAGES.values():
        if stage.name == "sft":
            for name in names:
                out.append(Stage(name, (prev,), ("sft", f"sft_stages.{name}") + _TRAIN_KEYS, True, stage.module))
                prev = name
        elif stage.name == "dpo":
            out.append(Stage("dpo", (prev,), stage.config_keys, True, stage.module))
        else:
            out.append(stage)
    return out


def selected(cfg: DictConfig, wanted: list[str]) -> list[Stage]:
    """The stages of the chain named in `wanted`, in chain order; `sft` names every SFT stage."""
    sft = set(sft_stage_names(cfg))
    return [s for s in chain(cfg) if s.name in wanted or ("sft" in wanted and s.name in sft)]


def by_name(cfg: DictConfig, name: str) -> Stage | None:
    return next((s for s in chain(cfg) if s.name == name), None)
