"""pretrain stage: a causal LM trained on packed fixed-length windows of the token shards.

Runs under torchrun (one process per device) with DeepSpeed ZeRO; resumes from the last complete checkpoint in
<stage_dir>/checkpoints. Outputs final/ (HF model + tokenizer) and metrics.jsonl. torch is imported inside run().
"""

from __future__ import annotations

import logging
import math

from kgov_train.stages import StageContext, StageResult

log = logging.getLogger("kgov_train")


def run(ctx: StageContext) -> StageResult:
    from transformers import AutoTokenizer, Trainer, TrainingArguments, default_data_collator, set_seed

    from kgov_train.train import common
    from kgov_train.train.data import PackedTokens, TrainDataError, check_shards
    from kgov_train.train.model import build_pretrain_model

    cfg, s = ctx.cfg, ctx.cfg.pretrain
    tok_dir, shards_dir = ctx.upstream["tokenizer"], ctx.upstream["shards"]
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    index = check_shards(shards_dir, tok_dir, tokenizer)

    train_ds = PackedTokens(shards_dir, "train", s.seq_len)
    if len(train_ds) == 0:
        raise TrainDataError(
            f"pretrain: the train split of {shards_dir} has {train_ds.total_tokens} tokens, fewer than one "
            f"sequence of pretrain.seq_len={s.seq_len}"
        )
    val_ds = None
    if s.eval_sequences > 0:
        val_tokens = int(index["splits"]["validation"].get("tokens", 0))
        if val_tokens >= 2:  # a split shorter than seq_len is scored as one shorter sequence
            val_ds = PackedTokens(shards_dir, "validation", min(s.seq_len, val_tokens), max_items=s.eval_sequences)
    common.quiet_nonzero_ranks(ctx)

    set_seed(cfg.seed)
    args = TrainingArguments(**common.training_kwargs(cfg, "pretrain", ctx.stage_dir, count_tokens="all"))
    model, model_info = build_pretrain_model(cfg, tokenizer, tok_dir)
    parameters = common.count_parameters(model)
    if ctx.is_main:
        log.info("pretrain: %s parameters, vocab %d (tokenizer %d), %d train sequences of %d tokens, world size %d",
                 f"{parameters:,}", model_info["vocab_size"], len(tokenizer), len(train_ds), s.seq_len, ctx.world_size)

    callback = common.MetricsCallback("pretrain", ctx.stage_dir, ctx.is_main)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=default_data_collator,
                      processing_class=tokenizer, callbacks=[callback])
    common.prepare_trainer(trainer)
    output, resumed = common.train(ctx, "pretrain", trainer)

    extra: dict = {**model_info, "seq_len": int(s.seq_len), "train_sequences": len(train_ds),
                   "train_split_tokens": train_ds.total_tokens}
    if val_ds is not None and len(val_ds):
        ev = trainer.evaluate(eval_dataset=val_ds)
        loss = float(ev["eval_loss"])
        extra.update({"validation_loss": round(loss, 4), "validation_perplexity": round(math.exp(min(loss, 50.0)), 2),
                      "validation_sequences": len(val_ds), "validation_tokens": len(val_ds) * val_ds.seq_len})
        if ctx.is_main:
            log.info("pretrain: validation loss %.4f, perplexity %.2f over %d sequences", loss,
                     extra["validation_perplexity"], len(val_ds))
    return common.finish(ctx, "pretrain", trainer, output, resumed, callback, parameters, extra)
