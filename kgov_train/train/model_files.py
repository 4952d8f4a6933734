"""A model folder (an upstream final/) loaded for training, and what is set on a model before it is saved."""

from __future__ import annotations

from pathlib import Path

from data_prep.tokenizer import chat_template as S_CT
from data_prep.tokenizer import specials as S


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


def ensure_chat_template(model, tokenizer) -> str:
    """The chat template SFT and DPO train with: the model's own ("own"), or for a base model without one (a Llama-2
    or GPT-NeoX base, a cpt run that kept such a tokenizer) the project's ("project's"), whose role markers are
    added as special tokens with new embedding rows (the mean of the others) where the vocabulary lacks them."""
    if getattr(tokenizer, "chat_template", None):
        return "own"
    tokenizer.chat_template = S_CT.DEFAULT_CHAT_TEMPLATE
    missing = [m for m in S.ROLE_MARKERS if m not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return "project's"
