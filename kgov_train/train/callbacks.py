"""The callbacks every training stage runs: metrics.jsonl and the step log line, rank-0-only output, no all-reduce
over a group of one; and the recipe's own callbacks (`<stage>.callbacks`)."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from transformers import TrainerCallback

from kgov_train.config.sections import section
from kgov_train.run_folder import METRICS, StageContext, read_jsonl

log = logging.getLogger("kgov_train")


_TRACKED = ("tokens_per_sec", "tokens_per_sec_per_device", "mfu", "step_time", "data_wait", "memory_gb")


class MetricsCallback(TrainerCallback):
    """Appends one JSON line per logged training step to <stage_dir>/metrics.jsonl (rank 0) and logs a summary line.

    tokens_per_sec counts the tokens every rank processed since the previous log (the Trainer gathers
    num_input_tokens_seen across ranks) over the wall time since then. On resume, lines past the resumed step
    (written after the checkpoint by the interrupted run) are dropped, so the file holds each step once.
    """

    def __init__(self, stage: str, stage_dir: Path, is_main: bool, step_stats=None, flops_per_token: float = 0.0,
                 peak_flops: float = 0.0):
        """step_stats: an engine.StepStats (step time, data wait, memory); flops_per_token and peak_flops (all
        devices, FLOP/s) give `mfu` when both are known."""
        self.stage, self.path, self.is_main = stage, stage_dir / METRICS, is_main
        self.step_stats, self.flops_per_token, self.peak_flops = step_stats, flops_per_token, peak_flops
        self.last: dict[str, Any] | None = None
        self.start_step = 0
        self.start_tokens = 0
        self._t = time.time()
        self._tokens = 0

    # What a stage made of several trainers (pretrain.phases: engine.PhaseMetrics) changes.
    def keeps(self, row: dict[str, Any], step: int) -> bool:
        """Whether a row an earlier run of the stage logged stays when this trainer starts at `step` (resume)."""
        return row.get("step", 0) <= step

    def labelled(self, rec: dict[str, Any]) -> dict[str, Any]:
        """The record as metrics.jsonl gets it."""
        return rec

    def shown(self, rec: dict[str, Any]) -> tuple[str, int]:
        """The log line's title and step of `rec`."""
        return self.stage, rec["step"]

    def on_train_begin(self, args, state, control, **kwargs):
        self._t, self._tokens = time.time(), state.num_input_tokens_seen
        self.start_step, self.start_tokens = state.global_step, state.num_input_tokens_seen
        if self.is_main:
            rows = [r for r in read_jsonl(self.path) if self.keeps(r, state.global_step)]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
            os.replace(tmp, self.path)
            self.last = rows[-1] if rows else None

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs:
            return  # evaluation results (eval_loss) and the end-of-training summary (train_loss) are not step records
        now = time.time()
        tokens = state.num_input_tokens_seen
        rec: dict[str, Any] = {
            "step": state.global_step,
            "loss": _num(logs.get("loss")),
            "lr": _num(logs.get("learning_rate")),
            "grad_norm": _num(logs.get("grad_norm")),
            "tokens_per_sec": round((tokens - self._tokens) / max(now - self._t, 1e-9), 2),
            "tokens_seen": tokens,
            "epoch": _num(logs.get("epoch")),
            "time": round(now, 3),
        }
        skip = {"loss", "learning_rate", "grad_norm", "epoch", "num_input_tokens_seen", "step", "train_runtime",
                "train_tokens_per_second"}
        rec.update({k: _num(v) for k, v in logs.items() if k not in skip and isinstance(v, (int, float))})
        if self.step_stats is not None:
            rec.update(self.step_stats.take())
        rec["tokens_per_sec_per_device"] = round(rec["tokens_per_sec"] / max(args.world_size, 1), 2)
        if self.flops_per_token and self.peak_flops:
            rec["mfu"] = round(rec["tokens_per_sec"] * self.flops_per_token / self.peak_flops, 5)
        # into the logs the trackers (wandb) see next: prepare_trainer runs this callback first
        logs.update({k: rec[k] for k in _TRACKED if k in rec})
        self._t, self._tokens = now, tokens
        rec = self.labelled(rec)
        self.last = rec
        if self.is_main:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            title, step = self.shown(rec)
            log.info("%s step %d/%d loss %s lr %s grad_norm %s tok/s %.0f", title, step, state.max_steps,
                     _fmt(rec["loss"], ".4f"), _fmt(rec["lr"], ".3g"), _fmt(rec["grad_norm"], ".3f"),
                     rec["tokens_per_sec"])


def logged_steps(ctx: StageContext, callback: MetricsCallback) -> list[dict[str, Any]]:
    """Every logged step of the stage (across resumes) on rank 0; the callback's last record elsewhere."""
    rows = read_jsonl(ctx.stage_dir / METRICS) if ctx.is_main else []
    return rows or ([callback.last] if callback.last else [])


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _num(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def quiet_nonzero_ranks(ctx: StageContext) -> None:
    """Progress bars and logs from rank 0 only (every rank loads the same data and would repeat its warnings);
    errors still raise on every rank."""
    if ctx.is_main:
        return
    log.setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


class _NoSoloAllReduce(TrainerCallback):
    """One process: DeepSpeed's backward still flattens every gradient into buckets and all-reduces them over a
    group of one (~6% of a small model's step on CPU, scripts/bench_pretrain.py). Nothing to reduce, so it is off."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        engine = self.trainer.model_wrapped
        if args.world_size == 1 and hasattr(engine, "enable_backward_allreduce"):
            engine.enable_backward_allreduce = False


def recipe_callbacks(cfg: DictConfig, name: str) -> list:
    """The stage's `callbacks`: each {_target_: module.Class, **its arguments}, built by Hydra's instantiate."""
    from hydra.utils import instantiate

    return [instantiate(spec) for spec in section(cfg, name).callbacks]


def prepare_trainer(trainer, cfg: DictConfig, name: str) -> None:
    """Our callbacks around the trainer, then the recipe's own (a callback with an `attach(trainer)` method gets the
    trainer itself, e.g. to wrap the model: tests inject faults this way)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # MetricsCallback logs one line per step instead
    trainer.add_callback(_NoSoloAllReduce(trainer))
    for cb in recipe_callbacks(cfg, name):
        if hasattr(cb, "attach"):
            cb.attach(trainer)
        trainer.add_callback(cb)
    handler = trainer.callback_handler
    ours = [c for c in handler.callbacks if isinstance(c, MetricsCallback)]
    handler.callbacks = ours + [c for c in handler.callbacks if not isinstance(c, MetricsCallback)]
