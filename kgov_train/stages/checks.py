"""Recipe checks the training stages share: every training stage's keys and LoRA, and the chat stages' (sft, dpo)
data and packing. Each returns its problems as messages naming the dotted key."""

from __future__ import annotations

from omegaconf import DictConfig

from kgov_train.chat import dataset_specs
from kgov_train.config.sections import SectionError, chat_kind, key_of, section, where
from kgov_train.errors import RecipeError
from kgov_train.train.arguments import trainer_args_problem
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
    for i, spec in enumerate(s.callbacks):
        errors += _callback_problems(where(cfg, name, "callbacks") + f"[{i}]", spec)
    if s.trainer_args:
        problem = trainer_args_problem(cfg, name, _arguments_class(name))
        if problem:
            errors.append(problem)
    zero = cfg.deepspeed.get("zero_optimization", {}) if cfg.deepspeed else {}
    if zero.get("offload_param") and s.zero_stage not in (None, 3):
        errors.append(f"deepspeed.zero_optimization.offload_param: needs ZeRO-3; "
                      f"{where(cfg, name, 'zero_stage')} is {s.zero_stage}")
    return s, errors


def _callback_problems(key: str, spec) -> list[str]:
    """A `callbacks` entry must name an importable class in `_target_` (imported here: a typo fails now)."""
    from hydra.utils import get_class

    target = spec.get("_target_") if hasattr(spec, "get") else None
    if not target:
        return [f"{key}: a mapping with _target_ (module.Class) and the class's arguments, got {spec!r}"]
    try:
        get_class(str(target))
    except Exception as e:  # Hydra wraps the import error; its message says what is missing
        return [f"{key}._target_: cannot import '{target}': {str(e).splitlines()[0]}"]
    return []


def _arguments_class(name: str):
    """The stage's real arguments class; imported only when trainer_args are set (transformers/TRL load torch)."""
    if name == "pretrain":
        from transformers import TrainingArguments

        return TrainingArguments
    from trl import DPOConfig, SFTConfig

    return DPOConfig if chat_kind(name) == "dpo" else SFTConfig


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
    errors += lora_problems(cfg, name)
    if kind == "sft" and s.packing:
        try:
            packing_kwargs(cfg, name)
        except PackingError as e:
            errors.append(str(e))
    return errors


def lora_problems(cfg: DictConfig, name: str) -> list[str]:
    """What is wrong with a training stage's <key>.lora (pretrain, sft, dpo); the module names are checked against
    the model when the stage builds it (train/lora.py)."""
    s = section(cfg, name)
    errors = []
    problem = qlora_problem(cfg, name)  # torch-free: needs LoRA on, a CUDA device and bitsandbytes
    if problem:
        errors.append(problem)
    if s.lora.enabled:
        if s.lora.r < 1:
            errors.append(f"{where(cfg, name, 'lora.r')}: must be >= 1, got {s.lora.r}")
        if not 0 <= s.lora.dropout < 1:
            errors.append(f"{where(cfg, name, 'lora.dropout')}: in [0, 1), got {s.lora.dropout}")
        if not s.lora.target_modules:
            errors.append(f"{where(cfg, name, 'lora.target_modules')}: empty; name the linear layers to adapt "
                          "(e.g. q_proj, v_proj)")
    return errors
