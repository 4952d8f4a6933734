"""pretrain stage: a causal LM trained on packed fixed-length windows of the token shards.

Runs under torchrun (one process per device) with DeepSpeed ZeRO; resumes from the last complete checkpoint in
<stage_dir>/checkpoints at the exact data position. The batch and lr schedule are given in tokens
(train/schedule.py); loss spikes, SIGTERM/SIGUSR1 and step metrics are handled by train/engine.py.
Outputs final/ (HF model + tokenizer) and metrics.jsonl. torch is imported inside run().
With pretrain.lora.enabled the model is trained as a LoRA adapter (QLoRA: on a 4-bit base) and final/ is the merged
model, the adapter kept in adapter/ (train/lora.py).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from kgov_train.errors import TrainDataError, TrainingInterrupted
from kgov_train.run_folder import CHECKPOINTS, StageContext, StageResult, model_folder
from kgov_train.stages.checks import lora_problems, training_problems
from kgov_train.train.schedule import ScheduleError, pretrain_schedule

log = logging.getLogger("kgov_train")


def check(cfg: DictConfig, name: str = "pretrain") -> list[str]:
    s, errors = training_problems(cfg, name)
    try:
        pretrain_schedule(cfg.pretrain, int(cfg.nnodes) * int(cfg.nproc_per_node))
    except ScheduleError as e:
        errors.append(str(e))
    if cfg.pretrain.spike.factor <= 1:
        errors.append(f"pretrain.spike.factor: must be > 1, got {cfg.pretrain.spike.factor}")
    m = cfg.model
    if cfg.pretrain.seq_len > m.max_position_embeddings:
        errors.append(f"pretrain.seq_len: {cfg.pretrain.seq_len} exceeds model.max_position_embeddings="
                      f"{m.max_position_embeddings}")
    if m.hidden_size % m.num_attention_heads:
        errors.append("model.hidden_size: must be divisible by model.num_attention_heads")
    if m.init_from and not Path(m.init_from).is_dir():
        errors.append(f"model.init_from: '{m.init_from}' is not a local folder (no hub downloads)")
    errors += lora_problems(cfg, name)
    if cfg.pretrain.lora.qlora and not (m.init_from or cfg.get("route") == "cpt"):
        errors.append("pretrain.lora.qlora: QLoRA quantizes a base model; set model.init_from or route=cpt")
    return errors


def external_inputs(cfg: DictConfig, name: str = "pretrain") -> list[Path]:
    """The checkpoint of a continued pretraining (model.init_from): its weights decide the result."""
    return [Path(str(cfg.model.init_from))] if cfg.model.init_from else []


def run(ctx: StageContext) -> StageResult:
    from transformers import AutoTokenizer, TrainingArguments, default_data_collator, set_seed

    from kgov_train.train import arguments, callbacks, final, lora, resume
    from kgov_train.train import engine as E
    from kgov_train.train.data import PackedTokens, check_shards
    from kgov_train.train.distributed import barrier
    from kgov_train.train.model import build_pretrain_model
    from kgov_train.train.model_files import count_parameters

    cfg, s = ctx.cfg, ctx.cfg.pretrain
    tok_dir, shards_dir = ctx.upstream["tokenizer"], ctx.upstream["shards"]
    ckpt_dir = ctx.stage_dir / CHECKPOINTS
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    index = check_shards(shards_dir, tok_dir, tokenizer)
    sched = pretrain_schedule(s, ctx.world_size)

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
    callbacks.quiet_nonzero_ranks(ctx)

    set_seed(cfg.seed)
    args = TrainingArguments(**arguments.training_kwargs(
        cfg, "pretrain", ctx.stage_dir, count_tokens="all", world_size=ctx.world_size,
        max_steps=sched.max_steps, gradient_accumulation_steps=sched.gradient_accumulation_steps,
        warmup_steps=sched.warmup_steps, lr_scheduler_type=sched.scheduler, lr_scheduler_kwargs=sched.scheduler_kwargs,
        ignore_data_skip=True))  # the resumable sampler positions the data itself
    base = model_folder(ctx.upstream["base"]) if "base" in ctx.upstream else None  # route cpt
    quant = lora.quantization_config(cfg, "pretrain")  # QLoRA: 4-bit base, else None
    model, model_info = build_pretrain_model(cfg, tokenizer, tok_dir, base=base, quantization=quant)
    parameters = count_parameters(model)
    if lora.enabled(cfg, "pretrain"):
        extended = "embedding_init" in model_info or "resized_embeddings_to" in model_info
        model = lora.wrap(cfg, "pretrain", model, extended=extended, gradient_checkpointing=s.gradient_checkpointing)
        model_info["lora"] = {**_lora_facts(model.peft_config["default"], quant is not None),
                              "trainable_parameters": lora.trainable_parameters(model)}

        def rebuild():  # the fp32 model the adapter was trained on, as built above (same seed), for the merge
            set_seed(cfg.seed)
            return build_pretrain_model(cfg, tokenizer, tok_dir, base=base)[0]

    m = model.config
    per_token = E.flops_per_token(parameters, m.num_hidden_layers, m.hidden_size, s.seq_len)
    if ctx.is_main:
        log.info("pretrain: %s parameters, vocab %d (tokenizer %d), %d train sequences of %d tokens, world size %d, "
                 "%d tokens per step (accumulation %d), %d steps", f"{parameters:,}", model_info["vocab_size"],
                 len(tokenizer), len(train_ds), s.seq_len, ctx.world_size, sched.global_batch_tokens,
                 sched.gradient_accumulation_steps, sched.max_steps)

    stats = E.StepStats()
    callback = callbacks.MetricsCallback("pretrain", ctx.stage_dir, ctx.is_main, step_stats=stats,
                                      flops_per_token=per_token,
                                      peak_flops=ctx.world_size * float(cfg.cluster.peak_tflops_per_device) * 1e12)
    trainer = E.PretrainTrainer(model=model, args=args, train_dataset=train_ds, data_collator=default_data_collator,
                                processing_class=tokenizer, callbacks=[callback, stats])
    trainer.flops_per_token = per_token
    if lora.enabled(cfg, "pretrain"):
        trainer.lora_base = rebuild  # final.save_final merges the adapter into it
    sp = s.spike
    trainer.samples_per_step = sched.samples_per_step(s.seq_len)
    trainer.spike_guard = E.SpikeGuard(sp.policy, sp.factor, sp.ema_steps, sp.min_steps, sp.max_events,
                                       ctx.stage_dir / E.SPIKES, ctx.is_main)
    stop = E.Preemption(trainer)
    trainer.add_callback(stop)
    stop.install()
    callbacks.prepare_trainer(trainer, cfg, "pretrain")

    def position_data(checkpoint):
        step = resume.checkpoint_step(checkpoint)
        trainer.start_step = step
        trainer.start_sample = step * trainer.samples_per_step + E.data_shift(ckpt_dir, step)

    output, resumed = resume.train(ctx, "pretrain", trainer, before_train=position_data)
    if stop.stopped == "rollback":
        spike = trainer.rollback_at or {}
        done = resume.complete_checkpoints(ckpt_dir)
        back_to = resume.checkpoint_step(done[-1] if done else None)
        if ctx.is_main:  # the steps after the checkpoint, up to the spike, are trained on other data next time
            E.add_data_shift(ckpt_dir, back_to, (spike["step"] - back_to) * trainer.samples_per_step, spike["step"])
        barrier()
        raise TrainingInterrupted("rollback", f"loss spike at step {spike.get('step')}: back to step {back_to}, "
                                              f"data of steps {back_to + 1}-{spike.get('step')} skipped")
    if stop.stopped:
        raise TrainingInterrupted("preempted", f"{stop.stopped} at step {trainer.state.global_step}, checkpoint saved")

    extra: dict = {**model_info, "seq_len": int(s.seq_len), "train_sequences": len(train_ds),
                   "train_split_tokens": train_ds.total_tokens, "global_batch_tokens": sched.global_batch_tokens,
                   "gradient_accumulation_steps": sched.gradient_accumulation_steps,
                   "lr_scheduler": sched.scheduler, "warmup_steps": sched.warmup_steps,
                   "decay_steps": sched.decay_steps, "flops_per_token": per_token,
                   "loss_spikes": trainer.spike_guard.events, "data_samples_skipped": E.data_shift(ckpt_dir)}
    if val_ds is not None and len(val_ds):
        ev = trainer.evaluate(eval_dataset=val_ds)
        loss = float(ev["eval_loss"])
        extra.update({"validation_loss": round(loss, 4), "validation_perplexity": round(math.exp(min(loss, 50.0)), 2),
                      "validation_sequences": len(val_ds), "validation_tokens": len(val_ds) * val_ds.seq_len})
        if ctx.is_main:
            log.info("pretrain: validation loss %.4f, perplexity %.2f over %d sequences", loss,
                     extra["validation_perplexity"], len(val_ds))
    return final.finish(ctx, "pretrain", trainer, output, resumed, callback, parameters, extra)


def _lora_facts(pc, qlora: bool) -> dict[str, Any]:
    return {"r": int(pc.r), "alpha": int(pc.lora_alpha), "dropout": float(pc.lora_dropout),
            "target_modules": sorted(pc.target_modules), "modules_to_save": sorted(pc.modules_to_save or []),
            "qlora": qlora}
