"""What the sft stages and dpo share: their section of the recipe, their data, the data's metrics.

Imported inside training processes. The data itself is kgov_train.chat (torch-free); this module ties it to a
stage: the section (`sft`, a named SFT stage `sft_stages.<name>`, or `dpo`), the tokenizer of the model the stage
starts from, and the datasets library the TRL trainers read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from kgov_train.chat import input_files, load_chat_data
from kgov_train.config.sections import chat_kind, key_of, section
from kgov_train.errors import TrainDataError
from kgov_train.run_folder import StageContext
from kgov_train.train import lora
from kgov_train.train.model_files import ensure_chat_template, load_model_dir, set_special_tokens

log = logging.getLogger("kgov_train")

REJECTS = "rejects"  # <stage_dir>/rejects/rejected.jsonl, sealed with the stage's outputs


@dataclass
class ChatStage:
    """A chat stage's settings: kind is "sft" or "dpo"; key is where its own keys live, for messages."""

    name: str
    kind: str
    key: str
    s: DictConfig

    @classmethod
    def of(cls, ctx: StageContext) -> "ChatStage":
        name = ctx.name
        return cls(name, chat_kind(name), key_of(ctx.cfg, name), section(ctx.cfg, name))


def external_inputs(cfg: DictConfig, name: str) -> list[Path]:
    """Every input file of every dataset of the stage (their hashes go into the manifest and the BOM)."""
    return [f.path for f in input_files(section(cfg, name), chat_kind(name), key_of(cfg, name))]


def load_model(ctx: StageContext, stage: ChatStage):
    """The upstream final/ model (4-bit for QLoRA), its tokenizer with a chat template, special tokens set, and the
    peft config (None without LoRA). Call it after the trainer arguments: under ZeRO-3 the model loads partitioned."""
    attn = ctx.cfg.model.attn_implementation
    if lora.qlora(ctx.cfg, stage.name):
        model, tokenizer = lora.load_qlora_base(ctx.cfg, stage.name, ctx.base, attn)
    else:
        model, tokenizer = load_model_dir(ctx.base, stage.name, attn)
    template = ensure_chat_template(model, tokenizer)
    if template != "own" and ctx.is_main:
        log.info("%s: %s has no chat template; training with the project's (role markers added)", stage.name, ctx.base)
    if stage.kind == "sft" and stage.s.assistant_only_loss:
        need_training_template(tokenizer, ctx.base, stage.key)
    set_special_tokens(model, tokenizer)
    model.config.use_cache = False
    return model, tokenizer, lora.peft_config(ctx.cfg, stage.name, model)


def need_training_template(tokenizer, where: Path, key: str) -> None:
    """Loss on the answers only needs {% generation %} markers in the chat template; TRL adds them to the templates
    it knows (Qwen2.5, Llama 3, ...). A base model's other template is refused before training, saying what to do."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        get_training_chat_template(tokenizer)
    except ValueError:
        raise TrainDataError(
            f"{key}.assistant_only_loss: the chat template of {where} has no {{% generation %}} markers and TRL knows "
            f"no training version of it; set {key}.assistant_only_loss=false (loss on whole conversations) or give "
            "the model a template with the markers") from None


def lora_metrics(stage: ChatStage, trainer) -> dict[str, Any]:
    """The LoRA settings and the parameters the optimizer updated (all of them in full fine-tuning)."""
    on = lora.is_lora_trainer(trainer)
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {"lora": lora.settings(model, bool(stage.s.lora.qlora)) if on else None,
            "trainable_parameters": lora.trainable_parameters(trainer.model)}


def load_data(ctx: StageContext, stage: ChatStage, tokenizer):
    """Train and validation records (kgov_train.chat.ChatData), lengths measured with the stage's tokenizer.
    Every rank loads the same records (deterministic for the seed); the rejects file is replaced atomically."""
    return load_chat_data(stage.s, stage.kind, stage.key, ctx.stage_dir, int(ctx.cfg.seed), tokenizer)


def to_dataset(records: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(records)


def data_metrics(data, trainer) -> dict[str, Any]:
    """What became of the stage's data: records read and rejected by reason, truncated and dropped for length,
    the validation split, the examples trained on; `data` holds the per-dataset figures."""
    t = data.stats["totals"]
    return {"records": t["valid"], "skipped_records": t["rejected"], "skipped_by_reason": t["rejected_by_reason"],
            "validation_records": len(data.validation), "truncated_records": t.get("truncated"),
            "dropped_records": t.get("dropped"), "train_records": len(data.train),
            "train_examples": len(trainer.train_dataset), "data": data.stats}
