"""The recipe's own checks that no single stage owns (the stage list, the cluster), run before any stage does heavy
work; each stage adds its checks beside its code (kgov_train.stages.<name>.check), and the pipeline runs them all.

Every message names the dotted key at fault, so a researcher editing YAML sees which line to fix.
"""

from __future__ import annotations

from omegaconf import DictConfig

from kgov_train.errors import RecipeError
from kgov_train.run_folder import CHAIN


def recipe_problems(cfg: DictConfig, chain_names: list[str]) -> list[str]:
    """What is wrong with the run-wide keys; `chain_names` is the recipe's chain (named SFT stages included)."""
    errors: list[str] = []

    def check(ok: bool, msg: str) -> None:
        if not ok:
            errors.append(msg)

    # the default, every stage of CHAIN, means the route's chain; a list of one's own names stages of the route
    unknown = [] if list(cfg.stages) == list(CHAIN) else [s for s in cfg.stages if s not in chain_names and s != "sft"]
    check(not unknown, f"stages: {unknown} not in the chain of route={cfg.route}: {chain_names}")
    check(len(cfg.stages) > 0, "stages: empty list; name at least one of " + ", ".join(chain_names))
    check(cfg.nproc_per_node >= 1, f"nproc_per_node: must be >= 1, got {cfg.nproc_per_node}")
    check(cfg.nnodes >= 1, f"nnodes: must be >= 1, got {cfg.nnodes}")
    c = cfg.cluster
    check(not (c.device == "cpu" and c.backend == "nccl"),
          "cluster.backend: nccl needs cluster.device=cuda; use gloo on CPU")
    check(not (c.device == "cpu" and c.precision == "fp16"),
          "cluster.precision: fp16 training needs a GPU (mixed-precision loss scaling); use bf16 or fp32 on CPU")
    return errors


def raise_problems(errors: list[str]) -> None:
    if errors:  # an `sft` key inherited by several named SFT stages is reported once
        raise RecipeError("invalid recipe:\n  " + "\n  ".join(dict.fromkeys(errors)))
