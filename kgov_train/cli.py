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

from kgov_train import REPO_ROOT
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
        OmegaConf.register_new_resolver("kgov_root", lambda: str(REPO_ROOT))
    register()


@hydra.main(config_path=str(REPO_ROOT / "recipes"), config_name="config", version_base="1.3")
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


def main() -> None:
    _setup()
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
