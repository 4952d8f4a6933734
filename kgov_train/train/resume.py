"""Resuming a training stage: its last complete checkpoint, taken only when it was written under the same settings,
and trainer.train() from there."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from kgov_train.config.sections import section
from kgov_train.run_folder import CHECKPOINTS, StageContext
from kgov_train.train.arguments import deepspeed_config
from kgov_train.train import trackers
from kgov_train.train.distributed import broadcast

log = logging.getLogger("kgov_train")

_CKPT = re.compile(r"^checkpoint-(\d+)$")


class ResumeError(RuntimeError):
    """Checkpoints exist that this run must not resume (other settings, or past max_steps)."""


def complete_checkpoints(ckpt_dir: Path) -> list[Path]:
    """checkpoint-N folders that were written to the end, oldest first.

    trainer_state.json is the Trainer's last write; a DeepSpeed checkpoint also needs its `latest` tag. A folder
    cut short by a kill lacks one of them and is ignored (the previous checkpoint is used).
    """
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = _CKPT.match(p.name)
        if not m or not p.is_dir() or not (p / "trainer_state.json").is_file():
            continue
        if any(p.glob("global_step*")) and not (p / "latest").is_file():
            continue
        found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


# Stage settings that may change between an interrupted run and its resumption (train longer, save more often).
# tokens/decay_tokens/min_lr_ratio: extending a run or starting its decay from a checkpoint is the point of resuming.
RESUMABLE_KEYS = frozenset({"max_steps", "save_steps", "save_total_limit", "logging_steps", "report_to",
                            "dataloader_num_workers", "eval_sequences", "tokens", "decay_tokens", "min_lr_ratio",
                            "spike", "callbacks"})
SETTINGS = "run_settings.json"


def run_settings(ctx: StageContext, name: str) -> dict[str, Any]:
    """What checkpoints of this stage depend on; a checkpoint written under other settings is not resumed."""
    cfg = ctx.cfg
    own = OmegaConf.to_container(section(cfg, name), resolve=True)
    settings = {
        name: {k: v for k, v in own.items() if k not in RESUMABLE_KEYS},
        "deepspeed": deepspeed_config(cfg, name, int(ctx.world_size)),
        "seed": int(cfg.seed),
        "precision": str(cfg.cluster.precision),
        "world_size": int(ctx.world_size),
    }
    if name == "pretrain":
        settings["model"] = OmegaConf.to_container(cfg.model, resolve=True)
    return settings


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _resume_problem(ckpt_dir: Path, last: Path, settings: dict[str, Any], max_steps: int, name: str) -> str | None:
    old_path = ckpt_dir / SETTINGS
    if old_path.is_file():
        old, new = _flat(json.loads(old_path.read_text(encoding="utf-8"))), _flat(settings)
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if diff:
            return (f"{name}: the checkpoints in {ckpt_dir} were written under other settings ({'; '.join(diff)}). "
                    "Restore those settings to resume them, or rerun with force=true to train this stage afresh")
    step = json.loads((last / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
    if step > max_steps:
        return (f"{name}: {last} is at step {step}, past {name}.max_steps={max_steps}; raise max_steps to "
                "continue from it, or rerun with force=true to train this stage afresh")
    return None


def resume_checkpoint(ctx: StageContext, name: str, max_steps: int, ckpt_dir: Path | None = None) -> Path | None:
    """The last complete checkpoint of this stage (in ckpt_dir: one pretrain phase's), if it was written under the
    same settings.

    Rank 0 decides and every rank follows, so they all resume from the same checkpoint or all refuse. A fresh
    start records the settings next to the checkpoints for the next resumption to compare against.
    """
    ckpt_dir = ckpt_dir or ctx.stage_dir / CHECKPOINTS
    decision: tuple[str | None, str | None] = (None, None)
    if ctx.is_main:
        settings = run_settings(ctx, name)
        found = complete_checkpoints(ckpt_dir)
        if found:
            decision = (str(found[-1]), _resume_problem(ckpt_dir, found[-1], settings, max_steps, name))
        else:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (ckpt_dir / SETTINGS).write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    last, problem = broadcast(decision)
    if problem:
        raise ResumeError(problem)
    return Path(last) if last else None


def checkpoint_step(checkpoint: Path | None) -> int:
    if checkpoint is None:
        return 0
    return int(json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])


def train(ctx: StageContext, name: str, trainer, before_train=None,
          ckpt_dir: Path | None = None) -> tuple[Any, Path | None]:
    """trainer.train(), resuming from the last complete checkpoint of an interrupted run of this stage (in ckpt_dir:
    one pretrain phase's). before_train(checkpoint or None) runs first (pretrain positions its data there)."""
    ckpt_dir = ckpt_dir or ctx.stage_dir / CHECKPOINTS
    resume = resume_checkpoint(ctx, name, int(trainer.args.max_steps), ckpt_dir)
    if before_train is not None:
        before_train(resume)
    if ctx.is_main:
        if resume is not None:
            step = json.loads((resume / "trainer_state.json").read_text())["global_step"]
            log.info("%s: resuming from %s (global_step %d of %d)", name, resume, step, trainer.args.max_steps)
        else:
            log.info("%s: starting from step 0 (no checkpoint in %s)", name, ckpt_dir)
    trackers.end_mlflow_run(trackers.OPEN.pop("mlflow", None), "FINISHED")  # an earlier trainer's (pretrain phases)
    reattached = trackers.continue_trackers(trainer, checkpoint_step(resume)) \
        if ctx.is_main and resume is not None else None
    try:
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except BaseException:
        trackers.end_mlflow_run(reattached, "FAILED")
        raise
    if ctx.is_main:
        trackers.OPEN["mlflow"] = trackers.keep_mlflow_run_open(trainer)
    return output, resume
