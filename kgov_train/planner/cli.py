"""`kgov-train plan [recipe=X] model=M cluster=C [nnodes=N] [other overrides] [plan.mfu=0.4] [--json]`.

The recipe tree is composed with Hydra's compose API rather than the training app: no run folder, no
stage validation (a plan needs no data), `recipe=` optional, and any composition error fits on one line.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional

from kgov_train import assets
from kgov_train.errors import RecipeError
from kgov_train.planner.report import Settings, make_plan, render

USAGE = __doc__.splitlines()[0].strip("`.")
PLAN_KEYS = {"mfu": float, "vocab_size": int, "overhead_gb": float}


def split_args(argv: list[str]) -> tuple[list[str], Settings, bool]:
    """Hydra overrides, our plan.* settings, --json."""
    overrides, st, as_json = [], Settings(), False
    for arg in argv:
        if arg == "--json":
            as_json = True
        elif arg.startswith("-"):
            raise RecipeError(f"{arg}: unknown flag; usage: {USAGE}")
        elif arg.startswith("plan."):
            key, eq, value = arg[len("plan."):].partition("=")
            if key not in PLAN_KEYS or not eq:
                known = ", ".join(f"plan.{k}" for k in PLAN_KEYS)
                raise RecipeError(f"plan.{key}: unknown planner setting (known: {known}; as plan.key=value)")
            try:
                setattr(st, key, None if key == "vocab_size" and value == "null" else PLAN_KEYS[key](value))
            except ValueError:
                raise RecipeError(f"plan.{key}: not a {PLAN_KEYS[key].__name__}: '{value}'") from None
        else:
            overrides.append(_integral_tokens(arg))
    if not any(o.split("=", 1)[0].lstrip("+~") == "recipe" for o in overrides):
        overrides.append("~recipe")  # recipes/config.yaml makes `recipe` mandatory; a plan needs none
    return overrides, st, as_json


def _integral_tokens(arg: str) -> str:
    """pretrain.tokens=2e12 -> 2000000000000: the schema's int refuses Hydra's float literal."""
    key, _, value = arg.partition("=")
    if key == "pretrain.tokens":
        try:
            n = float(value)
        except ValueError:
            return arg
        if n.is_integer():
            return f"{key}={int(n)}"
    return arg


def one_line(e: Exception) -> str:
    """Hydra's multi-line composition errors as `key: reason` (or `what failed: reason`)."""

    def lines_of(x) -> list[str]:
        return [ln.strip() for ln in str(x).splitlines() if ln.strip()] if x is not None else []

    outer, cause = lines_of(e), lines_of(e.__cause__)
    key = next((ln.split(":", 1)[1].strip() for ln in cause + outer if ln.startswith("full_key:")), None)
    if key and cause:
        return f"{key}: {cause[0]}"
    head = outer[0] if outer else type(e).__name__
    if getattr(e, "override", None):  # OverrideParseException: the message does not quote the override
        head = f"{e.override}: {head}"
    if cause and cause[0] != head:
        head += f": {cause[0]}"
    if "Config search path:" in outer:
        outer = outer[: outer.index("Config search path:")]
    i = next((i for i, ln in enumerate(outer) if ln.startswith("Available options")), None)
    if i is not None:
        head += f"; {outer[i].rstrip(':').lower()}: {', '.join(outer[i + 1:])}"
    return head


def compose_plan_config(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(assets.RECIPES), version_base="1.3"):
        return compose("config", overrides=overrides)


def main(argv: Optional[list[str]] = None) -> int:
    """Needs kgov_train.cli._setup() to have run (resolvers, schema). Returns the exit code."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        return _emit(f"usage: {USAGE}\n\n" + (sys.modules["kgov_train.planner"].__doc__ or ""))
    try:
        overrides, st, as_json = split_args(argv)
        try:
            cfg = compose_plan_config(overrides)
            plan = make_plan(cfg, st)
        except (HydraException, OmegaConfBaseException) as e:
            raise RecipeError(one_line(e)) from None
    except RecipeError as e:
        print(f"kgov-train plan: {e}", file=sys.stderr)
        return 2
    return _emit(json.dumps(_rounded(plan), indent=2) if as_json else render(plan))


def _rounded(x):
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def _emit(text: str) -> int:
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `kgov-train plan ... | head`: not an error
        sys.stdout = open(os.devnull, "w")
    return 0
