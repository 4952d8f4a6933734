"""The chain of stages, in order, and what each one depends on.

Each stage module exposes `check(cfg, name) -> list[str]` (its recipe's problems, each naming the dotted key; the
pipeline runs every selected stage's check before any work), `run(ctx) -> StageResult` and, when it reads files
from outside the run folder, `external_inputs(cfg, name) -> list[Path]` (name: the stage's, which differs from the
module's for named SFT stages), optionally with `input_labels(cfg, name) -> {path: {key: value}}`, extra keys for
those files' manifest entries. A stage module imports torch only inside run(): checking a recipe and the data
stages never load it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from kgov_train.config.sections import sft_stage_names
from kgov_train.run_folder import CHAIN, NEEDS, ROUTE_NEEDS, ROUTES, TRAINING, StageContext, StageResult

__all__ = ["STAGES", "Stage", "StageContext", "StageResult", "by_name", "chain", "selected"]


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]  # upstream stages whose outputs are this stage's inputs
    config_keys: tuple[str, ...]  # config sections that decide the stage's result
    distributed: bool  # launched under torchrun (one process per device)
    module: str

    def load(self):
        return importlib.import_module(self.module)

    def check(self, cfg: DictConfig) -> list[str]:
        return self.load().check(cfg, self.name)

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

# What decides each stage's result (its manifest's config) beyond its own section.
# data.sources: their weights shape the tokenizer's sample and the shards' mixture, not data/clean.
# eval: the evaluated models' final/ folders (eval.model_stage, eval.stages) are its external inputs.
_CONFIG_KEYS = {"base": ("base",), "data": ("data",), "tokenizer": ("tokenizer", "data.sources", "seed"),
                "shards": ("shards", "data.sources"), "pretrain": ("pretrain", "model") + _TRAIN_KEYS,
                "sft": ("sft",) + _TRAIN_KEYS, "dpo": ("dpo",) + _TRAIN_KEYS, "eval": ("eval", "pretrain.seq_len")}
STAGES: dict[str, Stage] = {name: Stage(name, NEEDS[name], _CONFIG_KEYS[name], name in TRAINING,
                                        f"kgov_train.stages.{name}") for name in CHAIN}


def chain(cfg: DictConfig) -> list[Stage]:
    """The run's stages in order: those of the recipe's `route` (run_folder.ROUTES) with the route's inputs, and
    `sft` replaced by the named SFT stages of `sft_stages` when the recipe has them (sft_general, then sft_domain,
    ...), the first from the model the route trains before SFT (pretrain, or the imported base), each next one from
    the previous one's final/, and dpo after the last."""
    route = str(cfg.get("route") or "scratch")
    needs = {**NEEDS, **ROUTE_NEEDS[route]}
    out: list[Stage] = []
    prev = ""  # the last stage that hands on a model
    for name in ROUTES[route]:
        stage = STAGES[name]
        if name == "sft":
            for sft in sft_stage_names(cfg):
                keys = stage.config_keys if sft == "sft" else ("sft", f"sft_stages.{sft}") + _TRAIN_KEYS
                out.append(Stage(sft, (prev,), keys, True, stage.module))
                prev = sft
            continue
        if name == "dpo":
            out.append(Stage("dpo", (str(cfg.dpo.get("from_stage") or prev),), stage.config_keys, True, stage.module))
        else:
            out.append(Stage(name, needs[name], stage.config_keys, stage.distributed, stage.module))
        if name in ("base", "pretrain"):
            prev = name
    return out


def selected(cfg: DictConfig, wanted: list[str]) -> list[Stage]:
    """The stages of the chain named in `wanted`, in chain order; `sft` names every SFT stage."""
    sft = set(sft_stage_names(cfg))
    return [s for s in chain(cfg) if s.name in wanted or ("sft" in wanted and s.name in sft)]


def by_name(cfg: DictConfig, name: str) -> Stage | None:
    return next((s for s in chain(cfg) if s.name == name), None)
