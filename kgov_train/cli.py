"""`kgov-train`: the Hydra app over recipes/ that runs the chain of stages.

    kgov-train recipe=smoke [overrides]                 run the recipe's stages here
    kgov-train submit recipe=X cluster=Y [--dry-run]    submit them to Slurm as chained jobs
    kgov-train plan model=M cluster=C [nnodes=N] [plan.mfu=0.4] [--json]
                                                        memory per GPU and training time (kgov_train/planner)
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from kgov_train import assets
from kgov_train.config.schema import register
from kgov_train.config.validate import RecipeError, validate
from kgov_train.launch import LaunchError, under_torchrun
from kgov_train.manifest import ManifestError

log = logging.getLogger("kgov_train")
_MODE = {"submit": False, "dry_run": False}

# Air-gapped by default (망분리): nothing reaches a hub or an online tracker unless the user says so.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "WANDB_MODE": "offline", "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}


def _setup() -> None:
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    if not OmegaConf.has_resolver("kgov_root"):
        OmegaConf.register_new_resolver("kgov_root", lambda: str(assets.ROOT))
    register()


@hydra.main(config_path=str(assets.RECIPES), config_name="config", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    from kgov_train import pipeline

    overrides = list(HydraConfig.get().overrides.task)
    try:
        validate(cfg)
        if _MODE["submit"]:
            from kgov_train.slurm import SubmitError, submit

            try:
                ids = submit(cfg, overrides, dry_run=_MODE["dry_run"])
            except SubmitError as e:
                raise pipeline.StageFailed(str(e)) from None
            print(" ".join(ids))
        elif under_torchrun():
            pipeline.run_distributed_stage(cfg)
        else:
            done = pipeline.run_chain(cfg, overrides)
            log.info("done: %s", ", ".join(f"{m.stage} ({m.wall_seconds}s)" for m in done))
    except (RecipeError, ManifestError, LaunchError, pipeline.StageFailed) as e:
        # Expected failures get one clear message, not a traceback.
        log.error("%s", e)
        sys.exit(2 if isinstance(e, RecipeError) else 1)
    except Exception as e:
        # A training process: the stage's traceback.txt holds the details (see pipeline.execute).
        log.error("%s: %s", type(e).__name__, e)
        log.debug("details", exc_info=True)  # shown with hydra.verbose=kgov_train
        sys.exit(1)


def _recipes() -> list[str]:
    return sorted(p.stem for p in (assets.RECIPES / "recipe").glob("*.yaml"))


def _usage() -> str:
    return f"""{__doc__.strip()}

Recipes here ({assets.RECIPES / 'recipe'}): {', '.join(_recipes())}

Keys used most (every key, its type and default: kgov-train recipe=X --cfg job):
  run_dir=runs/<recipe>  stages=[data,tokenizer,shards,pretrain,sft,dpo,eval]  force=true  seed=42
  nproc_per_node=N  nnodes=N  model=tiny|125m|1b|7b|13b  cluster=<profile>  deepspeed=zero1|zero2|zero3
  data.inputs=[...]  data.dedup.near=true  data.pii.salt=${{oc.env:KGOV_PII_SALT}}
  pretrain.max_steps=N  sft.data=[...]  dpo.data=[...]

Hydra's own options: kgov-train recipe=X --hydra-help. The README has the rest."""


def main() -> None:
    _setup()
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0)
    # Hydra would fail with a traceback without a recipe: say it in one line, with the choices.
    if args[0] != "plan" and not any(a.split("=", 1)[0].lstrip("+~") == "recipe" for a in args) \
            and "--hydra-help" not in args:
        print(f"kgov-train: recipe=<name> is required; recipes: {', '.join(_recipes())} "
              f"(kgov-train --help)", file=sys.stderr)
        sys.exit(2)
    # `plan` composes the recipe itself (kgov_train/planner/cli.py): no run, no stage validation, no recipe needed.
    if len(sys.argv) > 1 and sys.argv[1] == "plan":
        from kgov_train.planner.cli import main as plan_main

        sys.exit(plan_main(sys.argv[2:]))
    # `submit` and `--dry-run` are ours, not Hydra's: take them off argv before Hydra parses it.
    if len(sys.argv) > 1 and sys.argv[1] == "submit":
        _MODE["submit"] = True
        del sys.argv[1]
        if "--dry-run" in sys.argv:
            _MODE["dry_run"] = True
            sys.argv.remove("--dry-run")
    _app()


if __name__ == "__main__":
    main()
