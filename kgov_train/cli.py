"""`kgov-train`: the Hydra app over recipes/ that runs the chain of stages."""

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
        if under_torchrun():
            pipeline.run_distributed_stage(cfg)
        else:
            done = pipeline.run_chain(cfg, overrides)
            log.info("done: %s", ", ".join(f"{m.stage} ({m.wall_seconds}s)" for m in done))
    except (RecipeError, ManifestError, LaunchError, pipeline.StageFailed) as e:
        # Expected failures get one clear message, not a traceback.
        log.error("%s", e)
        sys.exit(2 if isinstance(e, RecipeError) else 1)


def main() -> None:
    _setup()
    _app()


if __name__ == "__main__":
    main()
