"""The air-gapped environment (망분리): nothing reaches a hub or an online tracker unless the user says so.

Library code never writes os.environ; the process entry points (the CLI, the torchrun children it starts, the
sbatch templates) apply these defaults, and a value the user exported wins.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from pathlib import Path

# DO_NOT_TRACK=1 does not switch off MLflow's telemetry (it wants "true"): MLFLOW_DISABLE_TELEMETRY does.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HF_EVALUATE_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "WANDB_MODE": "offline",
               "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}

# Where each tracker of a stage's report_to writes, under the stage folder (docs/operations.md).
TRACKER_DIRS = {"wandb": "wandb", "tensorboard": "tensorboard", "mlflow": "mlruns"}
STAGE_DIR_TAG = "kgov.stage_dir"  # the MLflow tag that finds a stage's run again when the stage resumes


def tracker_env(stage_dir: Path, recipe: str) -> dict[str, str]:
    """The trackers' defaults for a training stage, every one writing inside the stage folder:

    - wandb: its offline run files in <stage>/wandb (WANDB_MODE=offline above), one project;
    - tensorboard: event files in <stage>/tensorboard (transformers' TensorBoardCallback reads
      TENSORBOARD_LOGGING_DIR; TrainingArguments has no logging_dir in transformers 5);
    - mlflow: a local file store <stage>/mlruns, experiment = the recipe, run = <recipe>-<stage> (the run_name),
      tagged with the stage folder so that a resumed stage logs to the same run (train.resume). mlflow 3 refuses
      a file store unless MLFLOW_ALLOW_FILE_STORE is set (the sqlite store needs SQLAlchemy, which mlflow-skinny
      lacks); checkpoints are never copied into it as artifacts.

    A value the user exported wins (apply_defaults): MLFLOW_TRACKING_URI=sqlite:///... or an in-house server.
    """
    stage_dir = Path(stage_dir).absolute()
    return {
        "WANDB_DIR": str(stage_dir), "WANDB_PROJECT": "kgov-train",
        "TENSORBOARD_LOGGING_DIR": str(stage_dir / TRACKER_DIRS["tensorboard"]),
        "MLFLOW_TRACKING_URI": (stage_dir / TRACKER_DIRS["mlflow"]).as_uri(),
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "MLFLOW_EXPERIMENT_NAME": str(recipe),
        "MLFLOW_TAGS": json.dumps({STAGE_DIR_TAG: str(stage_dir)}, ensure_ascii=False),
        "MLFLOW_FLATTEN_PARAMS": "true",  # the DeepSpeed config as ds.* params instead of one dropped long string
        "HF_MLFLOW_LOG_ARTIFACTS": "false",
    }


def apply_defaults(environ: MutableMapping[str, str], extra: dict[str, str] | None = None) -> None:
    """OFFLINE_ENV (and `extra`) into `environ` where it has no value yet."""
    for k, v in {**OFFLINE_ENV, **(extra or {})}.items():
        environ.setdefault(k, v)
