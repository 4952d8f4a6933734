"""LoRA / QLoRA for the training stages (pretrain, sft, named sft_* stages, dpo): the peft config from the recipe,
the 4-bit base for QLoRA, and the merged final/ model with its adapter kept beside it.

What a stage does with it (all ranks unless said otherwise):

    peft_cfg = lora.peft_config(cfg, name, model)        # None when <key>.lora.enabled is false
    trainer = SFTTrainer(model=model, ..., peft_config=peft_cfg)  # DPOTrainer: also ref_model=None with LoRA
    ...
    lora.save_merged(trainer, final, base=ctx.base, is_main=ctx.is_main)   # from final.save_final

pretrain (a plain Trainer) wraps the model itself: `wrap(cfg, "pretrain", model, extended=...)`; its merge base is
the model the stage built (rebuilt on rank 0, fp32, CPU: `base` may be a callable returning it).

final/ is a plain transformers model (the adapter merged into the base, modules_to_save included) that loads without
peft; <stage_dir>/adapter/ holds adapter_config.json and adapter_model.safetensors (and the tokenizer).

The torch-free checks (qlora_problem) can run when the recipe is validated; everything else imports torch/peft
inside the functions.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from kgov_train.config.schema import LLAMA_LORA_TARGETS
from kgov_train.config.sections import key_of, section, where
from kgov_train.train.distributed import barrier
from kgov_train.train.model_files import set_special_tokens

log = logging.getLogger("kgov_train")

ADAPTER = "adapter"  # <stage_dir>/adapter, beside final/
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


# The LoRA targets when <key>.lora.target_modules is left at the schema's default (the Llama names), by
# model.config.model_type: every attention and MLP projection, never the LM head.
LLAMA_TARGETS = LLAMA_LORA_TARGETS
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    **{t: LLAMA_TARGETS for t in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "exaone")},
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),  # Polyglot-ko
}


class LoraSetupError(ValueError):
    """A LoRA/QLoRA setting of the recipe that cannot work; the message names the key."""


def enabled(cfg: DictConfig, name: str) -> bool:
    return bool(section(cfg, name).lora.enabled)


def qlora(cfg: DictConfig, name: str) -> bool:
    return bool(section(cfg, name).lora.qlora)


# ---------------------------------------------------------------------------------------------------------------------
# QLoRA
# ---------------------------------------------------------------------------------------------------------------------


def qlora_problem(cfg: DictConfig, name: str) -> str | None:
    """Why <key>.lora.qlora=true cannot run here, or None (also when qlora is off). Torch-free: for the up-front
    recipe check as well as for the stage."""
    lo = section(cfg, name).lora
    if not lo.qlora:
        return None
    key = where(cfg, name, "lora.qlora")
    if not lo.enabled:
        return (f"{key}=true trains a LoRA adapter on a 4-bit base: set {where(cfg, name, 'lora.enabled')}=true "
                "as well")
    needs = "QLoRA needs a CUDA GPU and bitsandbytes (pip install bitsandbytes)"
    if cfg.cluster.device != "cuda":
        return (f"{key}=true: {needs}; this recipe runs on cluster.device={cfg.cluster.device}. Set "
                f"{key}=false to train the LoRA adapter on the full-precision base")
    if importlib.util.find_spec("bitsandbytes") is None:
        return f"{key}=true: {needs}; bitsandbytes is not installed in this environment"
    return None


def check_qlora(cfg: DictConfig, name: str) -> None:
    problem = qlora_problem(cfg, name)
    if problem:
        raise LoraSetupError(problem)


def quantization_config(cfg: DictConfig, name: str):
    """The BitsAndBytesConfig for from_pretrained(quantization_config=...) when <key>.lora.qlora is set, else None.

    NF4 with double quantisation and bf16 compute (the QLoRA paper's setting). The 4-bit weights are stored in bf16
    containers (bnb_4bit_quant_storage) so that ZeRO-3 can partition them like the other bf16 parameters.
    """
    if not qlora(cfg, name):
        return None
    check_qlora(cfg, name)
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_storage=torch.bfloat16)


def load_qlora_base(cfg: DictConfig, name: str, path: Path, attn_implementation: str = "sdpa"):
    """The upstream final/ model in 4-bit on this process's GPU, prepared for k-bit training, and its tokenizer.

    Call it after the trainer arguments are built (as model_files.load_model_dir). The stage's gradient_checkpointing
    setting is left to the Trainer (activation_checkpointing), so prepare_model_for_kbit_training does not switch it on.
    """
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.integrations import is_deepspeed_zero3_enabled

    bnb = quantization_config(cfg, name)
    if bnb is None:
        raise LoraSetupError(f"{key_of(cfg, name)}.lora.qlora is false: load the base with model_files.load_model_dir")
    if not torch.cuda.is_available():
        raise LoraSetupError(f"{key_of(cfg, name)}.lora.qlora=true: no CUDA device visible to this process")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{name}: {path} holds no model (config.json missing); rerun the upstream stage")
    # ZeRO-3 places the partitions itself; otherwise each process loads the whole 4-bit model onto its own GPU
    device_map = None if is_deepspeed_zero3_enabled() else {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, dtype=torch.bfloat16,
                                                 attn_implementation=attn_implementation, device_map=device_map)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model, AutoTokenizer.from_pretrained(path)


# ---------------------------------------------------------------------------------------------------------------------
# The peft config
# ---------------------------------------------------------------------------------------------------------------------


def _matches(module_name: str, key: str) -> bool:
    """peft's rule for a plain (non-regex) target_modules / modules_to_save entry: the whole name or its last parts."""
    return module_name == key or module_name.endswith("." + key)


def _adaptable_leaves(model) -> list[str]:
    """Distinct last name parts of the modules LoRA can wrap (Linear, Embedding, Conv), in model order."""
    import torch.nn as nn

    seen: dict[str, None] = {}
    for n, m in model.named_modules():
        if n and isinstance(m, (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d)):
            seen.setdefault(n.rsplit(".", 1)[-1], None)
    return list(seen)


def _all_leaves(model) -> list[str]:
    seen: dict[str, None] = {}
    for n, _ in model.named_modules():
        if n:
            seen.setdefault(n.rsplit(".", 1)[-1], None)
    return list(seen)


def target_modules(cfg: DictConfig, name: str, model) -> list[str]:
    """<key>.lora.target_modules, or DEFAULT_TARGETS[model_type] when it is left at the (Llama) default."""
    targets = [str(t) for t in section(cfg, name).lora.target_modules]
    model_type = str(getattr(model.config, "model_type", ""))
    if tuple(targets) == LLAMA_TARGETS and model_type in DEFAULT_TARGETS:
        return list(DEFAULT_TARGETS[model_type])
    return targets


def embedding_modules(model) -> list[str]:
    """The input embedding's and (when not tied to it) the output head's module names, for modules_to_save."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    names = [_module_name(model, emb)]
    if head is not None and head.weight is not emb.weight:
        names.append(_module_name(model, head))
    return [n.rsplit(".", 1)[-1] for n in names if n]


def peft_config(cfg: DictConfig, name: str, model, extended: bool = False) -> Any:
    """peft.LoraConfig (task CAUSAL_LM) from <key>.lora, checked against `model`; None when LoRA is off.

    target_modules left at the default: the architecture's names (DEFAULT_TARGETS). extended (the vocabulary grew:
    pretrain after a tokenizer extension): modules_to_save left empty trains the embedding rows in full, input
    embedding and LM head (one module when tied; peft keeps the copies tied). modules_to_save rather than peft's
    trainable_token_indices: it is the path the merge and ZeRO-2/ZeRO-3 are tested on here (tests/test_lora.py), it
    covers an untied LM head without extra keys, and the old rows adapt to the new tokens beside them.

    Refused, naming the key: a target_modules or modules_to_save entry that matches no module of the model, a target
    that matches no Linear/Embedding/Conv module, lm_head as a LoRA target (TRL's fused LM head reads lm_head.weight
    directly, so an adapter on it would never train: put it in modules_to_save), a module in both lists, and
    qlora where it cannot run (qlora_problem).
    """
    lo = section(cfg, name).lora
    if not lo.enabled:
        if lo.qlora:
            check_qlora(cfg, name)  # says to enable LoRA
        return None
    check_qlora(cfg, name)
    import torch.nn as nn
    from peft import LoraConfig, TaskType

    key = f"{key_of(cfg, name)}.lora"
    targets = target_modules(cfg, name, model)
    to_save = [str(t) for t in lo.modules_to_save] or (embedding_modules(model) if extended else [])
    if not targets:
        raise LoraSetupError(f"{key}.target_modules is empty: name the modules to adapt, e.g. "
                             f"{_adaptable_leaves(model)}")
    if int(lo.r) < 1 or int(lo.alpha) < 1 or not 0.0 <= float(lo.dropout) < 1.0:
        raise LoraSetupError(f"{key}: r and alpha must be >= 1 and dropout in [0, 1); got r={lo.r}, alpha={lo.alpha}, "
                             f"dropout={lo.dropout}")
    both = sorted(set(targets) & set(to_save))
    if both:
        raise LoraSetupError(f"{key}: {both} in both target_modules and modules_to_save; a module is either adapted "
                             "(LoRA) or trained in full (modules_to_save)")
    names = [(n, m) for n, m in model.named_modules() if n]
    adaptable = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d)
    out_name = _module_name(model, model.get_output_embeddings())
    for t in targets:
        hits = [(n, m) for n, m in names if _matches(n, t)]
        if not hits:
            model_type = getattr(model.config, "model_type", "?")
            default = "" if model_type in DEFAULT_TARGETS else (
                f" (model_type '{model_type}' has no default targets in kgov_train.train.lora.DEFAULT_TARGETS)")
            raise LoraSetupError(f"{key}.target_modules: '{t}' matches no module of the model{default}; it has "
                                 f"{', '.join(_adaptable_leaves(model))}")
        if not any(isinstance(m, adaptable) for _, m in hits):
            kinds = sorted({type(m).__name__ for _, m in hits})
            raise LoraSetupError(f"{key}.target_modules: '{t}' matches only {kinds} modules, which LoRA cannot adapt; "
                                 f"name Linear/Embedding layers instead: {', '.join(_adaptable_leaves(model))}")
        if out_name is not None and any(n == out_name for n, _ in hits):
            raise LoraSetupError(f"{key}.target_modules: '{t}' is the LM head ({out_name}); TRL computes the "
                                 f"log-probabilities from its weight directly, so a LoRA adapter on it would never "
                                 f"train. Put it in {key}.modules_to_save to train it in full")
    for t in to_save:
        if not any(_matches(n, t) for n, _ in names):
            raise LoraSetupError(f"{key}.modules_to_save: '{t}' matches no module of the model; it has "
                                 f"{', '.join(_all_leaves(model)[:40])}")
    tied = bool(getattr(model.config, "tie_word_embeddings", False)) and model.get_output_embeddings() is not None
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=int(lo.r), lora_alpha=int(lo.alpha),
                      lora_dropout=float(lo.dropout), target_modules=targets, modules_to_save=to_save or None,
                      bias="none", ensure_weight_tying=tied and bool(to_save))


def wrap(cfg: DictConfig, name: str, model, extended: bool = False, gradient_checkpointing: bool = False):
    """`model` as a peft model for a stage that builds its own Trainer (pretrain); unchanged when LoRA is off.
    A QLoRA base (loaded with quantization_config) is prepared for k-bit training first."""
    peft_cfg = peft_config(cfg, name, model, extended=extended)
    if peft_cfg is None:
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if gradient_checkpointing:  # checkpointed blocks need an input that requires grad, or LoRA gets none
        model.enable_input_require_grads()
    return get_peft_model(model, peft_cfg)


def _module_name(model, module) -> str | None:
    if module is None:
        return None
    for n, m in model.named_modules():
        if m is module:
            return n
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Saving: the adapter, and final/ as the merged standalone model
# ---------------------------------------------------------------------------------------------------------------------


def trainable_parameters(model) -> int:
    """Parameters the optimizer updates (LoRA matrices and modules_to_save), also when ZeRO-3 has partitioned them."""
    return int(sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad))


def settings(model, qlora: bool) -> dict[str, Any]:
    """The LoRA settings a peft model trains with, as the manifest records them (the targets peft applied: an
    architecture's defaults when the recipe left target_modules alone)."""
    pc = model.peft_config["default"]
    return {"r": int(pc.r), "alpha": int(pc.lora_alpha), "dropout": float(pc.lora_dropout),
            "target_modules": sorted(pc.target_modules), "modules_to_save": sorted(pc.modules_to_save or []),
            "qlora": bool(qlora)}


def is_lora_trainer(trainer) -> bool:
    from accelerate.utils import is_peft_model

    return is_peft_model(trainer.accelerator.unwrap_model(trainer.model))


@contextlib.contextmanager
def _without_zero3():
    """from_pretrained on one rank while a ZeRO-3 run is configured: transformers would build the model under
    zero.Init (a collective, partitioned); here the base is wanted whole, on this process's CPU."""
    from transformers.integrations import deepspeed as hf_ds

    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved


def merge_adapter(base: Path | Callable[[], Any], adapter_dir: Path, out: Path, tokenizer=None) -> Path:
    """base (a model folder, or a callable building the fp32 model the adapter was trained on) + the adapter in
    adapter_dir, merged in fp32 on CPU and saved to `out` as a plain model.

    One process only (no collectives). modules_to_save (e.g. embed_tokens, lm_head after a vocabulary extension)
    replace the base's modules in the merged model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with _without_zero3():
        model = base() if callable(base) else AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32,
                                                                                  device_map=None)
        merged = PeftModel.from_pretrained(model, adapter_dir, is_trainable=False).merge_and_unload()
    if tokenizer is not None:
        set_special_tokens(merged, tokenizer)
    merged.config.use_cache = True
    if getattr(merged, "generation_config", None) is not None:
        merged.generation_config.use_cache = True
    merged.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def save_merged(trainer, final: Path, base: Path | Callable[[], Any], is_main: bool, tokenizer=None) -> Path:
    """The LoRA stage's outputs: <final.parent>/adapter (adapter_config.json, adapter_model.safetensors, tokenizer)
    and `final` (the base from `base` with the adapter merged in, a standalone transformers model). Returns the
    adapter folder.

    Every rank must call it: trainer.save_model gathers the adapter's parameters (under ZeRO-3 they are partitioned;
    transformers consolidates only the trainable ones for a peft model). Rank 0 then loads the base whole on CPU,
    applies the adapter, merges and saves; the others wait at the final barrier. `final` must not exist or be empty
    (final.save_final clears it first).
    """
    adapter_dir = final.parent / ADAPTER
    if is_main and adapter_dir.exists():
        shutil.rmtree(adapter_dir)
    barrier()
    trainer.save_model(str(adapter_dir))
    if is_main:
        (adapter_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle of the arguments
        missing = [f for f in ADAPTER_FILES if not (adapter_dir / f).is_file()]
        if missing:
            raise RuntimeError(f"{adapter_dir}: save_model wrote no {missing}; is the trained model a peft model?")
        merge_adapter(base, adapter_dir, final, tokenizer)
        log.info("LoRA: adapter in %s, merged model in %s (base %s)", adapter_dir, final,
                 "the model the stage built" if callable(base) else base)
    barrier()
    return adapter_dir
