"""Recipe checks the training stages share: every training stage's keys, and the chat stages' (sft, dpo) data,
LoRA and packing. Each returns its problems as messages naming the dotted key."""

from __future__ import annotations

from omegaconf import DictConfig

from kgov_train.chat import dataset_specs
from kgov_train.config.sections import SectionError, chat_kind, key_of, section, where
from kgov_train.errors import RecipeError
from kgov_train.train.lora import qlora_problem
from kgov_train.train.packing import PackingError, packing_kwargs


def training_problems(cfg: DictConfig, name: str) -> tuple[DictConfig | None, list[str]]:
    """The stage's section (None when it cannot be built) and what is wrong with its training keys."""
    try:
        s = section(cfg, name)
    except SectionError as e:
        return None, [str(e)]
    errors = []
    for k in ("max_steps", "save_steps", "logging_steps", "micro_batch_size", "gradient_accumulation_steps"):
        if s[k] < 1:
            errors.append(f"{where(cfg, name, k)}: must be >= 1, got {s[k]}")
    if s.zero_stage is not None and s.zero_stage not in (0, 1, 2, 3):
        errors.append(f"{where(cfg, name, 'zero_stage')}: 0, 1, 2 or 3, got {s.zero_stage}")
    zero = cfg.deepspeed.get("zero_optimization", {}) if cfg.deepspeed else {}
    if zero.get("offload_param") and s.zero_stage not in (None, 3):
        errors.append(f"deepspeed.zero_optimization.offload_param: needs ZeRO-3; "
                      f"{where(cfg, name, 'zero_stage')} is {s.zero_stage}")
    return s, errors


def chat_problems(cfg: DictConfig, name: str) -> list[str]:
    """What is wrong with an SFT or DPO stage's section."""
    s, errors = training_problems(cfg, name)
    if s is None:
        return errors
    key, kind = key_of(cfg, name), chat_kind(name)
    try:
        dataset_specs(s, kind, key)  # both or neither of data/datasets, globs, formats, weights: the first problem
    except RecipeError as e:
        errors.append(str(e))
    if not 0 <= s.validation_fraction < 1:
        errors.append(f"{where(cfg, name, 'validation_fraction')}: in [0, 1), got {s.validation_fraction}")
    problem = qlora_problem(cfg, name)  # torch-free: needs LoRA on, a CUDA device and bitsandbytes
    if problem:
        errors.append(problem)
    if kind == "sft" and s.packing:
        try:
            packing_kwargs(cfg, name)
        except PackingError as e:
            errors.append(str(e))
    if s.lora.enabled:
        if s.lora.r < 1:
            errors.append(f"{where(cfg, name, 'lora.r')}: must be >= 1, got {s.lora.r}")
        if not 0 <= s.lora.dropout < 1:
            errors.append(f"{where(cfg, name, 'lora.dropout')}: in [0, 1), got {s.lora.dropout}")
        if not s.lora.target_modules:
            errors.append(f"{where(cfg, name, 'lora.target_modules')}: empty; name the linear layers to adapt "
                          "(e.g. q_proj, v_proj)")
    return errors
