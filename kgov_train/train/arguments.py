"""The trainer arguments of a training stage (TrainingArguments / SFTConfig / DPOConfig keywords) from its section of
the recipe: schedule, batch, optimizer, precision, DeepSpeed, trackers, and `trainer_args` passed through."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kgov_train.config.sections import key_of, section, where
from kgov_train.run_folder import CHECKPOINTS


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
        # TRL configs default to bf16=True, so both are set explicitly. bf16 on CPU: the A100 recipes' precision
        # path, run where torch and DeepSpeed allow it (tests/test_train_stages.py).
        return {"use_cpu": True, "bf16": cfg.cluster.precision == "bf16", "fp16": False}
    return {"use_cpu": False, "bf16": cfg.cluster.precision == "bf16", "fp16": cfg.cluster.precision == "fp16"}


# The trackers a stage may report to: each writes inside the stage folder and never reaches the network
# (kgov_train.offline.tracker_env). Others (comet_ml, neptune, clearml, ...) are online services.
TRACKERS = ("wandb", "tensorboard", "mlflow")


def report_targets(name: str, wanted: list[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The stage's report_to, refused up front when a tracker is not one of TRACKERS or not installed (the Trainer
    fails late and vaguely). `name`: the stage's key in the recipe; `environ`: the process environment (read)."""
    from transformers.integrations import get_available_reporting_integrations

    environ = os.environ if environ is None else environ
    wanted = [w for w in wanted if w not in ("none", "")]
    unknown = [w for w in wanted if w not in TRACKERS]
    if unknown:
        raise ValueError(f"{name}.report_to: {unknown} not supported; the trackers that run offline, their files "
                         f"in the stage folder, are {list(TRACKERS)}. metrics.jsonl is written either way")
    missing = [w for w in wanted if w not in get_available_reporting_integrations()]
    if missing:
        raise ValueError(f"{name}.report_to: {missing} not installed in this environment; install it "
                         f"(e.g. pip install {missing[0]}) or drop it from {name}.report_to. metrics.jsonl is "
                         "written either way")
    if "mlflow" in wanted and environ.get("HF_MLFLOW_LOG_ARTIFACTS", "false").lower() in ("1", "true", "yes", "on"):
        raise ValueError(f"{name}.report_to: mlflow with HF_MLFLOW_LOG_ARTIFACTS={environ['HF_MLFLOW_LOG_ARTIFACTS']} "
                         "would copy every checkpoint into the tracker's store; unset it")
    return wanted


def training_kwargs(cfg: DictConfig, name: str, stage_dir: Path, count_tokens: str = "non_padding",
                    world_size: int | None = None, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for TrainingArguments / SFTConfig / DPOConfig from the stage's section of the recipe
    (`overrides` replace what a stage derives itself, e.g. pretrain's token schedule).

    Build the arguments object before the model: with ZeRO-3 it switches on zero.Init for from_pretrained/from_config.
    """
    s = section(cfg, name)
    report_to = report_targets(key_of(cfg, name), list(s.report_to))
    return {**recipe_kwargs(cfg, name, stage_dir), "report_to": report_to or "none",
            "deepspeed": deepspeed_config(cfg, name, world_size), "include_num_input_tokens_seen": count_tokens,
            **overrides, **passthrough(cfg, name)}


# What a stage derives itself (the token schedule, the DeepSpeed config): trainer_args cannot set these.
DERIVED = frozenset({"output_dir", "deepspeed", "max_steps", "gradient_accumulation_steps", "warmup_steps",
                     "lr_scheduler_type", "lr_scheduler_kwargs", "report_to", "include_num_input_tokens_seen",
                     "use_cpu", "bf16", "fp16"})


def passthrough(cfg: DictConfig, name: str) -> dict[str, Any]:
    return OmegaConf.to_container(section(cfg, name).trainer_args, resolve=True)


def recipe_kwargs(cfg: DictConfig, name: str, stage_dir: Path) -> dict[str, Any]:
    """The arguments the stage's keys set (everything but the trackers, DeepSpeed and trainer_args)."""
    s = section(cfg, name)
    opt = s.optimizer
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
        "optim": str(opt.name),
        "adam_beta1": float(opt.beta1),
        "adam_beta2": float(opt.beta2),
        "adam_epsilon": float(opt.eps),
        "weight_decay": float(opt.weight_decay),
        "max_grad_norm": float(s.max_grad_norm),
        "activation_checkpointing": bool(s.gradient_checkpointing),  # transformers 5 name of gradient_checkpointing
        "dataloader_num_workers": int(s.dataloader_num_workers),
        "seed": int(cfg.seed),
        "data_seed": int(cfg.seed),
        "prediction_loss_only": True,
        "disable_tqdm": True,  # one log line per step from MetricsCallback instead of progress bars
        **precision_kwargs(cfg),
    }


def trainer_args_problem(cfg: DictConfig, name: str, config_class) -> str | None:
    """Why `<stage>.trainer_args` cannot be used, found by building the stage's real arguments object
    (`config_class`: TrainingArguments, SFTConfig or DPOConfig) with them, or None."""
    import tempfile

    extra = passthrough(cfg, name)
    if not extra:
        return None
    key = where(cfg, name, "trainer_args")
    derived = sorted(DERIVED & set(extra))
    if derived:
        return f"{key}: {derived} are set by the stage's own keys (or derived from them); set those instead"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            config_class(**{**recipe_kwargs(cfg, name, Path(tmp)), "report_to": "none", **extra})
        except TypeError as e:
            return f"{key}: {e} (fields of {config_class.__name__})"
        except ValueError as e:
            return f"{key}: {config_class.__name__} refuses them: {str(e).splitlines()[0]}"
    return None
