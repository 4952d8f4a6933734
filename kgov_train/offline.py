"""The air-gapped environment (망분리): nothing reaches a hub or an online tracker unless the user says so.

Library code never writes os.environ; the process entry points (the CLI, the torchrun children it starts, the
sbatch templates) apply these defaults, and a value the user exported wins.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HF_EVALUATE_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "WANDB_MODE": "offline",
               "DO_NOT_TRACK": "1"}


def tracker_env(stage_dir: Path) -> dict[str, str]:
    """wandb's defaults for a training stage: its offline run files in the stage folder, one project."""
    return {"WANDB_DIR": str(stage_dir), "WANDB_PROJECT": "kgov-train"}


def apply_defaults(environ: MutableMapping[str, str], extra: dict[str, str] | None = None) -> None:
    """OFFLINE_ENV (and `extra`) into `environ` where it has no value yet."""
    for k, v in {**OFFLINE_ENV, **(extra or {})}.items():
        environ.setdefault(k, v)
