"""sft stage: supervised fine-tuning of the pretrained model on chat records (TRL SFTTrainer).

Data: cfg.sft.data, jsonl files whose records hold a `messages` list of {role, content}; invalid records are counted
and skipped. Loss on assistant tokens only (sft.assistant_only_loss), through the chat template's
{% generation %} markers. torch, transformers and TRL are imported inside run().
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from kgov_train.config.validate import resolve_globs
from kgov_train.stages import StageContext, StageResult

log = logging.getLogger("kgov_train")


def external_inputs(cfg: DictConfig) -> list[Path]:
    return resolve_globs(list(cfg.sft.data), "sft.data")


def run(ctx: StageContext) -> StageResult:
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from kgov_train.train import common
    from kgov_train.train.data import read_jsonl_records, to_dataset

    cfg, s = ctx.cfg, ctx.cfg.sft
    base = ctx.upstream["pretrain"] / common.FINAL
    records, skipped = read_jsonl_records(external_inputs(cfg), "sft")
    dataset = to_dataset(records)
    common.quiet_nonzero_ranks(ctx)

    set_seed(cfg.seed)
    args = SFTConfig(
        **common.training_kwargs(cfg, "sft", ctx.stage_dir),
        max_length=int(s.max_length),
        assistant_only_loss=bool(s.assistant_only_loss),
        packing=False,
    )
    # After the args: under ZeRO-3 the model is loaded partitioned.
    model, tokenizer = common.load_model_dir(base, "sft", cfg.model.attn_implementation)
    common.need_chat_template(tokenizer, base, "sft")
    common.set_special_tokens(model, tokenizer)
    model.config.use_cache = False
    parameters = common.count_parameters(model)

    callback = common.MetricsCallback("sft", ctx.stage_dir, ctx.is_main)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[callback])
    common.prepare_trainer(trainer)
    if ctx.is_main:
        log.info("sft: %d records (%d skipped), %d after tokenising/truncating to %d tokens, from %s",
                 len(records), sum(skipped.values()), len(trainer.train_dataset), s.max_length, base)
    output, resumed = common.train(ctx, "sft", trainer)

    rows = common.logged_steps(ctx, callback)
    last = rows[-1] if rows else {}
    extra = {
        **common.record_metrics(records, skipped, trainer),
        "assistant_only_loss": bool(s.assistant_only_loss),
        "final_mean_token_accuracy": last.get("mean_token_accuracy"),
    }
    return common.finish(ctx, "sft", trainer, output, resumed, callback, parameters, extra)
