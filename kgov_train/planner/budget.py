"""pretrain.flops, the equal-compute budget: the tokens D = flops / (6 N) of the model a recipe trains, known at
recipe-check time without torch.

N is the NON-embedding parameter count (planner.model.Shape.non_embedding_params: the decoder layers and the final
norm, neither the input embedding nor the LM head), so variants with other tokenizers or vocabularies get the same
compute in the transformer body. The model counted: on route=cpt the imported base (base.path/config.json), on
scratch a model.init_from checkpoint's config.json, else the recipe's model section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from kgov_train.planner.model import Shape
from kgov_train.planner.report import folder_shape, shape_of
from kgov_train.train.schedule import budget_tokens


def trained_shape(cfg: DictConfig) -> Shape:
    """The shape of the model the pretrain stage trains (see the module docstring)."""
    init_from = cfg.model.get("init_from")
    if str(cfg.get("route") or "scratch") == "scratch" and init_from:
        return folder_shape(Path(str(init_from)), "model.init_from")
    return shape_of(cfg)


def non_embedding_parameters(cfg: DictConfig) -> int:
    return trained_shape(cfg).non_embedding_params


def flops_budget(cfg: DictConfig) -> dict[str, Any] | None:
    """{flops_budget, non_embedding_parameters, budget_tokens} of pretrain.flops; None without it. Raises
    RecipeError (the model cannot be counted) or train.schedule.ScheduleError (the budget is wrong)."""
    p = cfg.pretrain
    if p.get("flops") is None:
        return None
    n = non_embedding_parameters(cfg)
    return {"flops_budget": float(p.flops), "non_embedding_parameters": n, "budget_tokens": budget_tokens(p, n)}
