"""What pretrain, sft and dpo share: trainer arguments, resume, metrics.jsonl, the final model folder, metrics.

Every function here runs inside a torchrun process (rank 0 and the others alike) unless it says otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from transformers import TrainerCallback

from kgov_train.config.sections import key_of, section
from kgov_train.stages import StageContext, StageResult
from kgov_train.train import lora

log = logging.getLogger("kgov_train")

CHECKPOINTS = "checkpoints"
FINAL = "final"
METRICS = "metrics.jsonl"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


class ResumeError(RuntimeError):
    """Checkpoints exist that this run must not resume (other settings, or past max_steps)."""


# ---------------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------------


def deepspeed_config(cfg: DictConfig, name: str, world_size: int | None = None) -> dict[str, Any] | None:
    """The recipe's DeepSpeed JSON with the stage's zero_stage applied; None when the recipe has no DeepSpeed.

    world_size 1 (known inside a run): ZeRO 1-3 without offload have nothing to partition across one process, only
    the cost of their gradient buckets and flat copies (~20% of a small model's step on CPU,
    scripts/bench_pretrain.py), so the stage runs DeepSpeed at stage 0. With offload the stage is kept: it moves
    optimizer states or parameters to CPU memory, which helps one GPU too.
    """
    ds = OmegaConf.to_container(cfg.deepspeed, resolve=True) if cfg.deepspeed else {}
    if not ds:
        return None
    zero = ds.setdefault("zero_optimization", {})
    stage = section(cfg, name).zero_stage
    if stage is not None:
        zero["stage"] = int(stage)
    if world_size == 1 and not (zero.get("offload_optimizer") or zero.get("offload_param")):
        zero["stage"] = 0
    if zero.get("reduce_bucket_size") == "auto" and int(zero.get("stage", 0)) in (1, 2):
        # transformers' "auto" is hidden^2 (16k elements for a tiny model): dozens of bucket flushes per
        # backward, ~20% of a small model's step on CPU (scripts/bench_pretrain.py); DeepSpeed's own default
        zero["reduce_bucket_size"] = 500_000_000
    if int(zero.get("stage", 0)) == 3:
        # Without it, save_model writes empty partitions instead of a loadable final/ model.
        zero.setdefault("stage3_gather_16bit_weights_on_model_save", True)
    return ds


def zero_stage(cfg: DictConfig, name: str, world_size: int | None = None) -> int | None:
    ds = deepspeed_config(cfg, name, world_size)
    return None if ds is None else int(ds["zero_optimization"].get("stage", 0))


def precision_kwargs(cfg: DictConfig) -> dict[str, Any]:
    if cfg.cluster.device == "cpu":
        # use_cpu: without it accelerate sees a single process and DeepSpeed's batch-size check fails.
        # TRL configs default to bf16=True, so both are set explicitly.
        return {"use_cpu": True, "bf16": False, "fp16": False}
    return {"use_cpu": False, "bf16": cfg.cluster.precision == "bf16", "fp16": cfg.cluster.precision == "fp16"}


def report_targets(name: str, wanted: list[str]) -> list[str]:
    """The stage's report_to, refused up front when a tracker is not installed (the Trainer fails late and vaguely)."""
    from transformers.integrations import get_available_reporting_integrations

    wanted = [w for w in wanted if w not in ("none", "")]
    missing = [w for w in wanted if w not in get_available_reporting_integrations()]
    if missing:
        raise ValueError(f"{name}.report_to: {missing} not installed in this environment; install it "
                         f"(e.g. pip install {missing[0]}) or drop it from {name}.report_to. metrics.jsonl is "
                         "written either way")
    return wanted


def training_kwargs(cfg: DictConfig, name: str, stage_dir: Path, count_tokens: str = "non_padding",
                    world_size: int | None = None, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for TrainingArguments / SFTConfig / DPOConfig from the stage's section of the recipe
    (`overrides` replace what a stage derives itself, e.g. pretrain's token schedule).

    Build the arguments object before the model: with ZeRO-3 it switches on zero.Init for from_pretrained/from_config.
    """
    s = section(cfg, name)
    report_to = report_targets(key_of(cfg, name), list(s.report_to))
    if "wandb" in report_to:
        os.environ.setdefault("WANDB_MODE", "offline")  # air-gapped unless the user says otherwise
        os.environ.setdefault("WANDB_DIR", str(stage_dir))
        os.environ.setdefault("WANDB_PROJECT", "kgov-train")
    return {
        "output_dir": str(stage_dir / CHECKPOINTS),
        "run_name": f"{cfg.recipe_name}-{name}",
        "max_steps": int(s.max_steps),
        "save_strategy": "steps",
        "save_steps": int(s.save_steps),
        "save_total_limit": int(s.save_total_limit),
        "logging_strategy": "steps",
        "logging_steps": int(s.logging_steps),
        "eval_strategy": "no",
        "per_device_train_batch_size": int(s.micro_batch_size),
        "per_device_eval_batch_size": int(s.micro_batch_size),
        "gradient_accumulation_steps": int(s.gradient_accumulation_steps),
        "learning_rate": float(s.learning_rate),
        "lr_scheduler_type": str(s.lr_scheduler_type),
        "warmup_steps": int(s.warmup_steps),
        "weight_decay": float(s.weight_decay),
        "max_grad_norm": float(s.max_grad_norm),
        "activation_checkpointing": bool(s.gradient_checkpointing),  # transformers 5 name of gradient_checkpointing
        "dataloader_num_workers": int(s.dataloader_num_workers),
        "report_to": report_to or "none",
        "seed": int(cfg.seed),
        "data_seed": int(cfg.seed),
        "deepspeed": deepspeed_config(cfg, name, world_size),
        "include_num_input_tokens_seen": count_tokens,
        "prediction_loss_only": True,
        "disable_tqdm": True,  # one log line per step from MetricsCallback instead of progress bars
        **precision_kwargs(cfg),
        **overrides,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------------------------------


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


def _broadcast(obj: Any) -> Any:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# Stage settings that may change between an interrupted run and its resumption (train longer, save more often).
# tokens/decay_tokens/min_lr_ratio: extending a run or starting its decay from a checkpoint is the point of resuming.
RESUMABLE_KEYS = frozenset({"max_steps", "save_steps", "save_total_limit", "logging_steps", "report_to",
                            "dataloader_num_workers", "eval_sequences", "tokens", "decay_tokens", "min_lr_ratio",
                            "spike"})
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


def resume_checkpoint(ctx: StageContext, name: str, max_steps: int) -> Path | None:
    """The last complete checkpoint of this stage, if it was written under the same settings.

    Rank 0 decides and every rank follows, so they all resume from the same checkpoint or all refuse. A fresh
    start records the settings next to the checkpoints for the next resumption to compare against.
    """
    ckpt_dir = ctx.stage_dir / CHECKPOINTS
    decision: tuple[str | None, str | None] = (None, None)
    if ctx.is_main:
        settings = run_settings(ctx, name)
        found = complete_checkpoints(ckpt_dir)
        if found:
            decision = (str(found[-1]), _resume_problem(ckpt_dir, found[-1], settings, max_steps, name))
        else:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (ckpt_dir / SETTINGS).write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    last, problem = _broadcast(decision)
    if problem:
        raise ResumeError(problem)
    return Path(last) if last else None


# ---------------------------------------------------------------------------------------------------------------------
# metrics.jsonl
# ---------------------------------------------------------------------------------------------------------------------


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return rows


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

    def on_train_begin(self, args, state, control, **kwargs):
        self._t, self._tokens = time.time(), state.num_input_tokens_seen
        self.start_step, self.start_tokens = state.global_step, state.num_input_tokens_seen
        if self.is_main:
            rows = [r for r in read_metrics(self.path) if r.get("step", 0) <= state.global_step]
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
        self.last = rec
        if self.is_main:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            log.info("%s step %d/%d loss %s lr %s grad_norm %s tok/s %.0f", self.stage, rec["step"], state.max_steps,
                     _fmt(rec["loss"], ".4f"), _fmt(rec["lr"], ".3g"), _fmt(rec["grad_norm"], ".3f"),
                     rec["tokens_per_sec"])


def logged_steps(ctx: StageContext, callback: MetricsCallback) -> list[dict[str, Any]]:
    """Every logged step of the stage (across resumes) on rank 0; the callback's last record elsewhere."""
    rows = read_metrics(ctx.stage_dir / METRICS) if ctx.is_main else []
    return rows or ([callback.last] if callback.last else [])


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _num(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ---------------------------------------------------------------------------------------------------------------------
# Model helpers
# ---------------------------------------------------------------------------------------------------------------------


def count_parameters(model) -> int:
    """All parameters, also when ZeRO-3 has already partitioned them (ds_numel)."""
    return int(sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters()))


def set_special_tokens(model, tokenizer) -> None:
    """The tokenizer's bos/eos/pad ids on the model config and generation config (saved with final/)."""
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    for k, v in ids.items():
        setattr(model.config, k, v)
        if getattr(model, "generation_config", None) is not None:
            setattr(model.generation_config, k, v)


def load_model_dir(path: Path, what: str, attn_implementation: str = "sdpa"):
    """A model and its tokenizer from an upstream stage's final/ folder (local only).

    Loaded in fp32: with bf16/fp16 DeepSpeed casts the module itself and keeps fp32 master weights.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{what}: {path} holds no model (config.json missing); rerun the upstream stage")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn_implementation)
    return model, tokenizer


def need_chat_template(tokenizer, where: Path, name: str) -> None:
    from kgov_train.train.data import TrainDataError

    if not getattr(tokenizer, "chat_template", None):
        raise TrainDataError(f"{name}: the tokenizer in {where} has no chat template; the tokenizer stage sets one")


# ---------------------------------------------------------------------------------------------------------------------
# Train, save final/, summarise
# ---------------------------------------------------------------------------------------------------------------------


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


def prepare_trainer(trainer) -> None:
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # MetricsCallback logs one line per step instead
    trainer.add_callback(_NoSoloAllReduce(trainer))
    handler = trainer.callback_handler
    ours = [c for c in handler.callbacks if isinstance(c, MetricsCallback)]
    handler.callbacks = ours + [c for c in handler.callbacks if not isinstance(c, MetricsCallback)]


def checkpoint_step(checkpoint: Path | None) -> int:
    if checkpoint is None:
        return 0
    return int(json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])


def train(ctx: StageContext, name: str, trainer, before_train=None) -> tuple[Any, Path | None]:
    """trainer.train(), resuming from the last complete checkpoint of an interrupted run of this stage.
    before_train(checkpoint or None) runs first (pretrain positions its data there)."""
    resume = resume_checkpoint(ctx, name, int(trainer.args.max_steps))
    if before_train is not None:
        before_train(resume)
    if ctx.is_main:
        if resume is not None:
            step = json.loads((resume / "trainer_state.json").read_text())["global_step"]
            log.info("%s: resuming from %s (global_step %d of %d)", name, resume, step, trainer.args.max_steps)
        else:
            log.info("%s: starting from step 0 (no checkpoint in %s)", name, ctx.stage_dir / CHECKPOINTS)
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return output, resume


def save_final(ctx: StageContext, trainer, tokenizer, known: dict[str, Any] | None = None) -> Path:
    """<stage_dir>/final: safetensors weights, config, generation config, tokenizer (with its chat template) and the
    model's papers (MODEL_CARD.md, bom.json: kgov_train.papers), which also report `known` (the stage's figures).

    Every rank must call it: under ZeRO-3, save_model gathers the partitioned 16-bit weights collectively.
    """
    final = ctx.stage_dir / FINAL
    if ctx.is_main and final.exists():
        shutil.rmtree(final)
    barrier()
    model = trainer.accelerator.unwrap_model(trainer.model)
    set_special_tokens(model, tokenizer)
    model.config.use_cache = True
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.use_cache = True
    if lora.is_lora_trainer(trainer):
        # final/ is the base with the adapter merged in (a standalone model); the adapter is kept in adapter/
        lora.save_merged(trainer, final, base=ctx.base, is_main=ctx.is_main, tokenizer=tokenizer)
    else:
        trainer.save_model(str(final))
    if ctx.is_main:
        tokenizer.save_pretrained(final)
        (final / "training_args.bin").unlink(missing_ok=True)  # a pickle of the arguments; the manifest has the config
        if not any(final.glob("*.safetensors")):
            raise RuntimeError(f"{final}: save_model wrote no safetensors weights")
        from kgov_train.papers import write_from_training

        write_from_training(ctx, trainer, final, known)  # MODEL_CARD.md, bom.json; raises PapersError naming the folder
    barrier()
    return final


def finish(ctx: StageContext, name: str, trainer, output, resumed_from: Path | None, callback: MetricsCallback,
           parameters: int, extra: dict[str, Any] | None = None, outputs: list[str] = ()) -> StageResult:
    """Save final/ and return the stage's outputs (final/, metrics.jsonl and `outputs`) and metrics (identical on
    every rank; rank 0's are sealed)."""
    save_final(ctx, trainer, tokenizer=trainer.processing_class, known=extra)
    rows = logged_steps(ctx, callback)
    last = rows[-1] if rows else {}
    runtime = float(output.metrics.get("train_runtime", 0.0))
    session_tokens = trainer.state.num_input_tokens_seen - callback.start_tokens
    metrics: dict[str, Any] = {
        "steps": int(trainer.state.global_step),
        "final_loss": last.get("loss"),
        "train_runtime": round(runtime, 2),
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "tokens_per_sec": round(session_tokens / runtime, 1) if runtime > 0 else None,
        "world_size": ctx.world_size,
        "zero_stage": zero_stage(ctx.cfg, name, ctx.world_size),
        "parameters": parameters,
        "resumed_from_step": callback.start_step if resumed_from is not None else None,
        "logged_steps": len(rows),
    }
    metrics.update(extra or {})
    if lora.is_lora_trainer(trainer):
        outputs = [*outputs, lora.ADAPTER]
    return StageResult(outputs=[FINAL, METRICS, *outputs], metrics=metrics)
