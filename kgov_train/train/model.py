"""The model pretraining starts from: a fresh Llama from cfg.model, or a local checkpoint (model.init_from)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from kgov_train.train.model_files import set_special_tokens

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


def init_extension_rows(model, extension: dict, extension_file: Path, old_rows: int) -> int:
    """Set each embedding row a tokenizer extension added (extension.json, data_prep.tokenizer.extend) to the
    mean of the base rows of the pieces it joins (input embeddings, and the output head when not tied): the
    new token starts out as what the base model read for that text. Rows without base_ids keep their init.
    old_rows: the base tokenizer's size (extension.json's base_vocab_size); a checkpoint padded past it (Qwen2,
    Polyglot-ko) gives its unused padding rows to the first new ids. Returns the number of rows set. Call before
    DeepSpeed wraps the model."""
    import contextlib

    import torch

    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    weights = [emb] + ([head.weight] if head is not None and head.weight is not emb else [])
    rows = int(emb.ds_shape[0]) if hasattr(emb, "ds_shape") else int(emb.shape[0])  # ZeRO-3: partitioned shape
    todo = [(int(a["id"]), [int(i) for i in a["base_ids"]]) for a in extension["added"] if a["base_ids"]]
    bad = [i for i, base in todo if not old_rows <= i < rows or not all(0 <= j < old_rows for j in base)]
    if bad:
        raise ModelInitError(f"{extension_file}: added ids {bad[:5]} are not new rows in [{old_rows}, {rows}) "
                             f"or have base_ids outside the base tokenizer's {old_rows} ids")
    gather = contextlib.nullcontext()
    if any(hasattr(w, "ds_id") for w in weights):  # zero.Init-partitioned: gathered; rank 0's values are kept
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(weights, modifier_rank=0)
    with gather, torch.no_grad():
        for w in weights:
            for i, base in todo:
                w[i] = w[base].float().mean(dim=0).to(w.dtype)
    return len(todo)


def build_pretrain_model(cfg: DictConfig, tokenizer, tokenizer_dir: Path | None = None,
                         base: Path | None = None, quantization=None) -> tuple[Any, dict[str, Any]]:
    """(model, facts for the metrics). Call after the TrainingArguments exist (ZeRO-3 zero.Init) and after seeding.

    tokenizer_dir: the tokenizer's folder; an extension.json there sets the new embedding rows (init_from).
    base: the imported base model of the cpt route, in place of model.init_from; its embeddings grow to an extended
    tokenizer without model.resize_embeddings (the route extends on purpose). A checkpoint with more embedding rows
    than its tokenizer has ids (padded, as Qwen2's) grows only when the extended tokenizer outgrows the rows.
    quantization: a BitsAndBytesConfig (QLoRA, lora.quantization_config): the base loaded in 4-bit on this process's
    GPU; needs init_from or base."""
    import torch
    from transformers import AutoModelForCausalLM


    m = cfg.model
    init_from = base or m.init_from
    if quantization is not None and not init_from:
        raise ModelInitError("pretrain.lora.qlora=true quantizes a base model: set model.init_from or route=cpt")
    if init_from:
        import json

        src = Path(init_from)
        if not (src / "config.json").is_file():
            raise ModelInitError(f"model.init_from: {src} is not a local Hugging Face model folder (no config.json)")
        load: dict[str, Any] = {"dtype": torch.float32}
        if quantization is not None:  # ZeRO-3 places the partitions itself; else this rank's GPU holds it all
            from transformers.integrations import is_deepspeed_zero3_enabled

            local = {"": int(os.environ.get("LOCAL_RANK", 0))}
            load = {"dtype": torch.bfloat16, "quantization_config": quantization,
                    "device_map": None if is_deepspeed_zero3_enabled() else local}
        model = AutoModelForCausalLM.from_pretrained(src, attn_implementation=m.attn_implementation, **load)
        have, need = int(model.config.vocab_size), len(tokenizer)  # rows (ZeRO-3: the weight is partitioned)
        info: dict[str, Any] = {"init_from": str(src), "init_vocab_size": have}
        ext_file = Path(tokenizer_dir) / "extension.json" if tokenizer_dir is not None else None
        extension = json.loads(ext_file.read_text(encoding="utf-8")) if ext_file and ext_file.is_file() else None
        base_ids = int(extension["base_vocab_size"]) if extension is not None else have
        if base_ids > have:  # fewer rows than the base tokenizer: padded rows (base_ids <= have) are fine
            raise ModelInitError(
                f"{ext_file} extends a tokenizer of {base_ids} ids but {src / 'config.json'} "
                f"has vocab_size {have}: the tokenizer was extended from another model's tokenizer"
            )
        if have < need:
            if not (m.resize_embeddings or base):
                raise ModelInitError(
                    f"model.init_from: {src} has {have} embedding rows but the tokenizer has {need} tokens; "
                    "set model.resize_embeddings=true to grow the embeddings (new rows get the mean embedding), "
                    "or train with the checkpoint's own tokenizer"
                )
            model.resize_token_embeddings(need, mean_resizing=True)
            info["resized_embeddings_to"] = need
            log.info("pretrain: embeddings of %s grown from %d to %d rows (mean init)", src, have, need)
        if extension is not None or have < need:  # rows from here on are new (pretrain.phases: new_embeddings)
            info["new_rows_from"] = base_ids
        if extension is not None:
            n = init_extension_rows(model, extension, ext_file, base_ids)
            info.update({"embedding_init": "extension_mean_of_base_pieces", "embedding_rows_initialised": n})
            log.info("pretrain: %d new embedding rows set to the mean of their base pieces (%s)", n, ext_file)
    else:
        from transformers.initialization import no_init_weights
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        config = llama_config(cfg, tokenizer)
        if is_deepspeed_zero3_enabled():  # transformers: no torch default init, then initialize_weights_zero3
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                                     attn_implementation=m.attn_implementation)
        else:  # the same order by hand, so a seed gives the same weights under every ZeRO stage
            with no_init_weights():
                model = AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                                         attn_implementation=m.attn_implementation)
            model.initialize_weights()
            model.tie_weights()
        info = {"init_from": None}
    set_special_tokens(model, tokenizer)
    model.config.use_cache = False
    info.update({"vocab_size": int(model.config.vocab_size), "tokenizer_vocab_size": len(tokenizer)})
    return model, info
