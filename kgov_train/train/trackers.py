"""The trackers of a training stage across trainer.train() calls (kgov_train.train.resume): a resumed stage logs to
the interrupted run (TensorBoard, MLflow), and the MLflow run stays open for what the stage logs after training.
Where each tracker writes: kgov_train.offline.tracker_env."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping

log = logging.getLogger("kgov_train")

# The MLflow run a trainer logged to, kept active after trainer.train() (see keep_mlflow_run_open).
OPEN: dict[str, str | None] = {}


def keep_mlflow_run_open(trainer) -> str | None:
    """Rank 0 after trainer.train(): the stage's MLflow run active again, so that what the stage logs after training
    (trainer.evaluate()'s eval_loss) goes to it. MLflowCallback ends its run at on_train_end, and an on_log after
    that starts a new, nameless run. The run ends when the process does (mlflow's atexit) or when the next
    trainer of the stage starts (pretrain phases)."""
    from transformers.integrations.integration_utils import MLflowCallback

    if not any(isinstance(cb, MLflowCallback) for cb in trainer.callback_handler.callbacks):
        return None
    import mlflow

    active = mlflow.active_run()
    if active is not None:  # a run continued by continue_trackers, or the user's: the callback left it open
        return active.info.run_id
    last = mlflow.last_active_run()
    if last is None:
        return None
    mlflow.start_run(run_id=last.info.run_id)
    return last.info.run_id


def continue_trackers(trainer, step: int, environ: Mapping[str, str] | None = None) -> str | None:
    """Rank 0 of a stage resumed from the checkpoint at `step`: the trackers go on where the interrupted run was.

    - tensorboard: the new event file (same folder) starts with a purge at step+1, so the steps the interrupted
      run logged after its checkpoint, redone now, are shown once (TensorBoard drops the orphaned ones);
    - mlflow: the interrupted run of this stage (tagged with its folder, offline.tracker_env) is started again, and
      transformers' MLflowCallback logs into the active run instead of starting one. Its parameters keep their first
      values (mlflow refuses changed ones with an error line and the rest goes on); the redone steps are in its
      metric history twice (the later ones are the resumed run's). No run found (another MLFLOW_TAGS, a user's
      MLFLOW_RUN_ID): the callback's own behaviour, a new run.
    - wandb (offline): a new offline run in the same folder.

    Returns the MLflow run id started here (train() ends it FAILED if training raises; else it stays open for the
    stage's evaluation, keep_mlflow_run_open), or None.
    """
    from transformers.integrations.integration_utils import MLflowCallback, TensorBoardCallback

    environ = os.environ if environ is None else environ
    run_id = None
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback) and cb.tb_writer is None and cb.logging_dir:
            from torch.utils.tensorboard import SummaryWriter

            cb.tb_writer = SummaryWriter(log_dir=cb.logging_dir, purge_step=step + 1)
        elif isinstance(cb, MLflowCallback) and run_id is None:
            run_id = _restart_mlflow_run(str(trainer.args.run_name), step, environ)
    return run_id


def _restart_mlflow_run(run_name: str, step: int, environ: Mapping[str, str]) -> str | None:
    from kgov_train.offline import STAGE_DIR_TAG

    try:
        stage_dir = json.loads(environ.get("MLFLOW_TAGS") or "{}").get(STAGE_DIR_TAG)
    except (ValueError, AttributeError):
        stage_dir = None
    experiment = environ.get("MLFLOW_EXPERIMENT_NAME")
    if not stage_dir or not experiment or environ.get("MLFLOW_RUN_ID"):
        return None
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=environ.get("MLFLOW_TRACKING_URI"))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=500)
    found = [r for r in runs if r.data.tags.get(STAGE_DIR_TAG) == stage_dir and r.info.run_name == run_name]
    if not found or mlflow.active_run() is not None:
        return None
    run_id = found[0].info.run_id
    mlflow.start_run(run_id=run_id)
    mlflow.set_tag("kgov.resumed_from_step", str(step))
    log.info("mlflow: logging to run %s again (resumed from step %d)", run_id, step)
    return run_id


def end_mlflow_run(run_id: str | None, status: str) -> None:
    if run_id is None:
        return
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status=status)
