"""sft stage(s): supervised fine-tuning on chat records (TRL SFTTrainer), from the previous stage's final/.

`sft`, or the named SFT stages of `sft_stages` (sft_general, then sft_domain, ...), each `sft` with its own keys on
top (kgov_train.config.sections). Data: the section's datasets (kgov_train.chat: messages, KoAlpaca, Q/A columns,
mixed by weight, a validation split, rejects kept in rejects/). Loss on assistant tokens only
(sft.assistant_only_loss) through the chat template's {% generation %} markers; optional packing. torch,
transformers and TRL are imported inside run().
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from omegaconf import DictConfig

from kgov_train.run_folder import StageContext, StageResult
from kgov_train.stages.checks import chat_problems
from kgov_train.train.chat_stage import external_inputs as chat_inputs

log = logging.getLogger("kgov_train")


def check(cfg: DictConfig, name: str = "sft") -> list[str]:
    return chat_problems(cfg, name)


def external_inputs(cfg: DictConfig, name: str = "sft") -> list[Path]:
    return chat_inputs(cfg, name)


def run(ctx: StageContext) -> StageResult:
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from kgov_train.train import arguments, callbacks, final, packing, resume
    from kgov_train.train import chat_stage as C
    from kgov_train.train.model_files import count_parameters

    cfg, st, base = ctx.cfg, C.ChatStage.of(ctx), ctx.base
    s = st.s
    callbacks.quiet_nonzero_ranks(ctx)

    set_seed(cfg.seed)
    args = SFTConfig(
        **arguments.training_kwargs(cfg, st.name, ctx.stage_dir, world_size=ctx.world_size),
        max_length=int(s.max_length),
        assistant_only_loss=bool(s.assistant_only_loss),
        **packing.packing_kwargs(cfg, st.name),
    )
    model, tokenizer, peft_config = C.load_model(ctx, st)
    data = C.load_data(ctx, st, tokenizer)
    parameters = count_parameters(model)

    callback = callbacks.MetricsCallback(st.name, ctx.stage_dir, ctx.is_main)
    validation = C.to_dataset(data.validation) if data.validation else None
    trainer = SFTTrainer(model=model, args=args, train_dataset=C.to_dataset(data.train), eval_dataset=validation,
                         processing_class=tokenizer, callbacks=[callback], peft_config=peft_config)
    callbacks.prepare_trainer(trainer, cfg, st.name)
    if ctx.is_main:
        t = data.stats["totals"]
        log.info("%s: %d training records (%d rejected, %s truncated, %s dropped), %d validation, %d examples after "
                 "tokenising%s, max_length %d, from %s", st.name, len(data.train), t["rejected"], t["truncated"],
                 t["dropped"], len(data.validation), len(trainer.train_dataset),
                 " and packing" if s.packing else "", s.max_length, base)
    output, resumed = resume.train(ctx, st.name, trainer)

    rows = callbacks.logged_steps(ctx, callback)
    last = rows[-1] if rows else {}
    extra = {
        **C.data_metrics(data, trainer),
        **C.lora_metrics(st, trainer),
        "assistant_only_loss": bool(s.assistant_only_loss),
        "packing": bool(s.packing),
        "final_mean_token_accuracy": last.get("mean_token_accuracy"),
    }
    if validation is not None:
        loss = float(trainer.evaluate()["eval_loss"])
        extra.update({"validation_loss": round(loss, 4), "validation_perplexity": round(math.exp(min(loss, 50.0)), 2)})
    return final.finish(ctx, st.name, trainer, output, resumed, callback, parameters, extra, outputs=[C.REJECTS])
