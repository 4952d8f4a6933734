"""dpo stage: direct preference optimisation of the SFT model (TRL DPOTrainer).

Data: cfg.dpo.data, jsonl files whose records hold `prompt`, `chosen` and `rejected` message lists; invalid records
are counted and skipped. The reference model is the SFT model, loaded explicitly (partitioned under ZeRO-3).
torch, transformers and TRL are imported inside run().
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from kgov_train.config.validate import resolve_globs
from kgov_train.stages import StageContext, StageResult

log = logging.getLogger("kgov_train")

_REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


def external_inputs(cfg: DictConfig) -> list[Path]:
    return resolve_globs(list(cfg.dpo.data), "dpo.data")


def run(ctx: StageContext) -> StageResult:
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer

    from kgov_train.train import common
    from kgov_train.train.data import read_jsonl_records, to_dataset

    cfg, s = ctx.cfg, ctx.cfg.dpo
    base = ctx.upstream["sft"] / common.FINAL
    records, skipped = read_jsonl_records(external_inputs(cfg), "dpo")
    dataset = to_dataset(records)
    common.quiet_nonzero_ranks(ctx)

    set_seed(cfg.seed)
    args = DPOConfig(
        **common.training_kwargs(cfg, "dpo", ctx.stage_dir),
        max_length=int(s.max_length),
        beta=float(s.beta),
        loss_type=[str(s.loss_type)],
    )
    # After the args: under ZeRO-3 both are loaded partitioned. The reference is its own copy of the SFT model.
    model, tokenizer = common.load_model_dir(base, "dpo", cfg.model.attn_implementation)
    ref_model, _ = common.load_model_dir(base, "dpo (reference)", cfg.model.attn_implementation)
    common.need_chat_template(tokenizer, base, "dpo")
    for m in (model, ref_model):
        common.set_special_tokens(m, tokenizer)
        m.config.use_cache = False
    parameters = common.count_parameters(model)

    callback = common.MetricsCallback("dpo", ctx.stage_dir, ctx.is_main)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=dataset,
                         processing_class=tokenizer, callbacks=[callback])
    common.prepare_trainer(trainer)
    if ctx.is_main:
        log.info("dpo: %d preference pairs (%d skipped), %d after tokenising, beta %s, loss %s, from %s",
                 len(records), sum(skipped.values()), len(trainer.train_dataset), s.beta, s.loss_type, base)
    output, resumed = common.train(ctx, "dpo", trainer)

    rows = common.logged_steps(ctx, callback)
    last = rows[-1] if rows else {}
    extra = {
        **common.record_metrics(records, skipped, trainer),
        "beta": float(s.beta),
        "loss_type": str(s.loss_type),
        **{"final_" + k.replace("/", "_"): last.get(k) for k in _REWARDS},  # the last logged step (a few pairs)
        **{"mean_" + k.replace("/", "_"): _mean([r.get(k) for r in rows]) for k in _REWARDS},  # over all steps
    }
    return common.finish(ctx, "dpo", trainer, output, resumed, callback, parameters, extra)


def _mean(values: list) -> float | None:
    values = [v for v in values if isinstance(v, (int, float))]
    return round(sum(values) / len(values), 6) if values else None
