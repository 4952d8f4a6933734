"""The model pretraining starts from: a fresh Llama from cfg.model, or a local checkpoint (model.init_from)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger("kgov_train")


class ModelInitError(ValueError):
    pass


def round_up(n: int, multiple: int) -> int:
    multiple = max(1, int(multiple))
    return -(-n // multiple) * multiple


def llama_config(cfg: DictConfig, tokenizer):
    from transformers import LlamaConfig

    m = cfg.model
    if m.architecture != "llama":
        raise ModelInitError(f"model.architecture: only 'llama' is implemented, got '{m.architecture}'")
    return LlamaConfig(
        vocab_size=round_up(len(tokenizer), m.pad_vocab_multiple),
        hidden_size=m.hidden_size,
        intermediate_size=m.intermediate_size,
        num_hidden_layers=m.num_hidden_layers,
        num_attention_heads=m.num_attention_heads,
        num_key_value_heads=m.num_key_value_heads or m.num_attention_heads,
        max_position_embeddings=m.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": float(m.rope_theta)},
        rms_norm_eps=m.rms_norm_eps,
        tie_word_embeddings=m.tie_word_embeddings,
        initializer_range=m.initializer_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_pretrain_model(cfg: DictConfig, tokenizer) -> tuple[Any, dict[str, Any]]:
    """(model, facts for the metrics). Call after the TrainingArguments exist (ZeRO-3 zero.Init) and after seeding."""
    import torch
    from transformers import AutoModelForCausalLM

    from kgov_train.train.common import set_special_tokens

    m = cfg.model
    if m.init_from:
        src = Path(m.init_from)
        if not (src / "config.json").is_file():
            raise ModelInitError(f"model.init_from: {src} is not a local Hugging Face model folder (no config.json)")
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, attn_implementation=m.attn_implementation)
        have, need = int(model.config.vocab_size), len(tokenizer)
        info: dict[str, Any] = {"init_from": str(src), "init_vocab_size": have}
        if have < need:
            if not m.resize_embeddings:
                raise ModelInitError(
                    f"model.init_from: {src} has {have} embedding rows but the tokenizer has {need} tokens; "
                    "set model.resize_embeddings=true to grow the embeddings (new rows get the mean embedding), "
                    "or train with the checkpoint's own tokenizer"
                )
            model.resize_token_embeddings(need, mean_resizing=True)
            info["resized_embeddings_to"] = need
            log.info("pretrain: embeddings of %s grown from %d to %d rows (mean init)", src, have, need)
    else:
        config = llama_config(cfg, tokenizer)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=m.attn_implementation)
        info = {"init_from": None}
    set_special_tokens(model, tokenizer)
    model.config.use_cache = False
    info.update({"vocab_size": int(model.config.vocab_size), "tokenizer_vocab_size": len(tokenizer)})
    return model, info
