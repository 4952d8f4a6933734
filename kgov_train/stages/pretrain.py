"""pretrain stage: a causal LM trained on packed fixed-length windows of the token shards.

Runs under torchrun (one process per device) with DeepSpeed ZeRO; resumes from the last complete checkpoint in
<stage_dir>/checkpoints at the exact data position. The batch and lr schedule are given in tokens
(train/schedule.py); loss spikes, SIGTERM/SIGUSR1 and step metrics are handled by train/engine.py.
Outputs final/ (HF model + tokenizer) and metrics.jsonl. torch is imported inside run().
With pretrain.phases the stage trains them in order, each a Trainer run of its own (train/phases.py).
With pretrain.lora.enabled the model is trained as a LoRA adapter (QLoRA: on a 4-bit base) and final/ is the merged
model, the adapter kept in adapter/ (train/lora.py).
With pretrain.flops the run's tokens are flops / (6 x non-embedding parameters) (planner/budget.py).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from kgov_train.errors import RecipeError, TrainDataError, TrainingInterrupted
from kgov_train.planner.budget import flops_budget, non_embedding_parameters
from kgov_train.run_folder import StageContext, StageResult, model_folder
from kgov_train.stages.checks import lora_problems, training_problems
from kgov_train.train import phases
from kgov_train.train.schedule import ScheduleError, pretrain_schedule

log = logging.getLogger("kgov_train")


def check(cfg: DictConfig, name: str = "pretrain") -> list[str]:
    s, errors = training_problems(cfg, name)
    p = cfg.pretrain
    try:  # pretrain.flops: the model's non-embedding parameters, counted without torch
        n = non_embedding_parameters(cfg) if p.get("flops") is not None and p.tokens is None else None
        pretrain_schedule(p, int(cfg.nnodes) * int(cfg.nproc_per_node), n)
    except (ScheduleError, RecipeError) as e:
        errors.append(str(e))
    if cfg.pretrain.spike.factor <= 1:
        errors.append(f"pretrain.spike.factor: must be > 1, got {cfg.pretrain.spike.factor}")
    m, cpt = cfg.model, cfg.get("route") == "cpt"
    if not cpt:  # on cpt the imported base is the model, and `model` is not read
        if cfg.pretrain.seq_len > m.max_position_embeddings:
            errors.append(f"pretrain.seq_len: {cfg.pretrain.seq_len} exceeds model.max_position_embeddings="
                          f"{m.max_position_embeddings}")
        if m.hidden_size % m.num_attention_heads:
            errors.append("model.hidden_size: must be divisible by model.num_attention_heads")
    elif m.init_from:
        errors.append("model.init_from: route=cpt continues from base.path; remove model.init_from")
    if m.init_from and not Path(m.init_from).is_dir():
        errors.append(f"model.init_from: '{m.init_from}' is not a local folder (no hub downloads)")
    errors += lora_problems(cfg, name)
    if p.get("flops") is None or not p.phases:  # flops with phases is refused above, once
        errors += phases.problems(cfg, int(cfg.nnodes) * int(cfg.nproc_per_node))
    if cfg.pretrain.lora.qlora and not (m.init_from or cfg.get("route") == "cpt"):
        errors.append("pretrain.lora.qlora: QLoRA quantizes a base model; set model.init_from or route=cpt")
    return errors


def external_inputs(cfg: DictConfig, name: str = "pretrain") -> list[Path]:
    """The checkpoint of a continued pretraining (model.init_from): its weights decide the result."""
    return [Path(str(cfg.model.init_from))] if cfg.model.init_from else []


def run(ctx: StageContext) -> StageResult:
    from transformers import AutoTokenizer, set_seed

    from kgov_train.train import callbacks, final, resume
    from kgov_train.train.data import PackedTokens, check_shards

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
    callbacks.quiet_nonzero_ranks(ctx)

    # The phases in order (no pretrain.phases: one phase in checkpoints/); a finished one is not redone, the next
    # starts from its last checkpoint's weights and reads the data from where it stopped.
    at = {"step": 0, "tokens": 0, "sample": 0}
    done: list[dict[str, Any]] = []
    model_info: dict[str, Any] = {}
    parameters, previous, trainer = 0, None, None
    budget = flops_budget(cfg)  # pretrain.flops: {flops_budget, non_embedding_parameters, budget_tokens}; else None
    if budget and ctx.is_main:
        log.info("pretrain: pretrain.flops=%.3e / (6 x %s non-embedding parameters) = %s tokens",
                 budget["flops_budget"], f"{budget['non_embedding_parameters']:,}", f"{budget['budget_tokens']:,}")
    plan = phases.plan(s)
    for phase in plan:
        facts = phases.done(ctx.stage_dir, phase)
        if facts is None or phase is plan[-1]:  # the last one resumes at its end: final/ is saved from its trainer
            if trainer is not None:
                _release(trainer)
            set_seed(cfg.seed)
            trainer, output, resumed, callback, sched, facts, model_info, parameters = _train_phase(
                ctx, phase, tokenizer, train_ds, previous, at, model_info, parameters,
                budget["non_embedding_parameters"] if budget else None)
        model_info, parameters = facts.get("model_info", model_info), facts.get("parameters", parameters)
        done.append(facts)
        at = {"step": at["step"] + facts["steps"], "tokens": at["tokens"] + facts["tokens"],
              "sample": facts["end_sample"]}
        previous = (resume.complete_checkpoints(phase.ckpt_dir(ctx.stage_dir)) or [None])[-1]

    extra: dict = {**model_info, "seq_len": int(s.seq_len), "train_sequences": len(train_ds),
                   "train_split_tokens": train_ds.total_tokens, "global_batch_tokens": sched.global_batch_tokens,
                   "gradient_accumulation_steps": sched.gradient_accumulation_steps,
                   "lr_scheduler": sched.scheduler, "warmup_steps": sched.warmup_steps,
                   "decay_steps": sched.decay_steps, "flops_per_token": trainer.flops_per_token,
                   "loss_spikes": sum(f["loss_spikes"] for f in done),
                   "data_samples_skipped": sum(f["data_samples_skipped"] for f in done), **(budget or {})}
    if s.phases:  # the stage's totals; each phase's own figures under `phases`
        extra.update({"steps": at["step"], "tokens_seen": at["tokens"],
                      "phases": [{k: v for k, v in f.items() if k not in ("model_info", "parameters", "spec")}
                                 for f in done]})
    if val_ds is not None and len(val_ds):
        ev = trainer.evaluate(eval_dataset=val_ds)
        loss = float(ev["eval_loss"])
        extra.update({"validation_loss": round(loss, 4), "validation_perplexity": round(math.exp(min(loss, 50.0)), 2),
                      "validation_sequences": len(val_ds), "validation_tokens": len(val_ds) * val_ds.seq_len})
        if ctx.is_main:
            log.info("pretrain: validation loss %.4f, perplexity %.2f over %d sequences", loss,
                     extra["validation_perplexity"], len(val_ds))
    return final.finish(ctx, "pretrain", trainer, output, resumed, callback, parameters, extra)


def _train_phase(ctx: StageContext, phase, tokenizer, train_ds, previous: Path | None, at: dict[str, int],
                 model_info: dict[str, Any], parameters: int, non_embedding: int | None = None):
    """Train one phase (resuming its checkpoints); (trainer, train output, checkpoint resumed, metrics callback,
    schedule, the phase's facts, model facts, parameters). `previous`: the last checkpoint of the phase before."""
    from accelerate.state import AcceleratorState
    from transformers import TrainingArguments, default_data_collator, set_seed

    from kgov_train.train import arguments, callbacks, lora, resume
    from kgov_train.train import engine as E
    from kgov_train.train.distributed import barrier
    from kgov_train.train.model import build_pretrain_model
    from kgov_train.train.model_files import count_parameters

    cfg = ctx.cfg
    s = phases.phase_section(cfg.pretrain, phase)
    ckpt_dir = phase.ckpt_dir(ctx.stage_dir)
    sched = pretrain_schedule(s, ctx.world_size, non_embedding)
    if phase.index:  # a fresh Accelerator (and DeepSpeed plugin) for this phase's Trainer; the process group stays
        AcceleratorState._reset_state(reset_partial_state=False)
    args = TrainingArguments(**arguments.training_kwargs(
        cfg, "pretrain", ctx.stage_dir, count_tokens="all", world_size=ctx.world_size, output_dir=str(ckpt_dir),
        max_steps=sched.max_steps, gradient_accumulation_steps=sched.gradient_accumulation_steps,
        warmup_steps=sched.warmup_steps, lr_scheduler_type=sched.scheduler, lr_scheduler_kwargs=sched.scheduler_kwargs,
        learning_rate=float(s.learning_rate), ignore_data_skip=True,  # the resumable sampler positions the data
        # new rows only: no decoupled weight decay, which would move the frozen base rows
        **({"weight_decay": 0.0} if phase.trainable == "new_embeddings" else {})))
    base = model_folder(ctx.upstream["base"]) if "base" in ctx.upstream else None  # route cpt
    quant = lora.quantization_config(cfg, "pretrain")  # QLoRA: 4-bit base, else None
    if previous is None:
        model, model_info = build_pretrain_model(cfg, tokenizer, ctx.upstream["tokenizer"], base=base,
                                                 quantization=quant)
        parameters = count_parameters(model)
    else:
        model = phases.load_phase_model(previous, cfg, tokenizer)
    trainable, hooks = phases.restrict(model, phase.trainable, model_info.get("new_rows_from"))
    if lora.enabled(cfg, "pretrain"):
        extended = "embedding_init" in model_info or "resized_embeddings_to" in model_info
        model = lora.wrap(cfg, "pretrain", model, extended=extended, gradient_checkpointing=s.gradient_checkpointing)
        model_info["lora"] = {**lora.settings(model, quant is not None),
                              "trainable_parameters": lora.trainable_parameters(model)}

        def rebuild():  # the fp32 model the adapter was trained on, as built above (same seed), for the merge
            set_seed(cfg.seed)
            return build_pretrain_model(cfg, tokenizer, ctx.upstream["tokenizer"], base=base)[0]

    m = model.config
    per_token = E.flops_per_token(parameters, m.num_hidden_layers, m.hidden_size, s.seq_len)
    if ctx.is_main:
        log.info("pretrain%s: %s parameters (%s trainable), vocab %d (tokenizer %d), %d train sequences of %d tokens, "
                 "world size %d, %d tokens per step (accumulation %d), %d steps",
                 f" phase {phase.index} '{phase.name}'" if phase.name else "", f"{parameters:,}", f"{trainable:,}",
                 model_info["vocab_size"], len(tokenizer), len(train_ds), s.seq_len, ctx.world_size,
                 sched.global_batch_tokens, sched.gradient_accumulation_steps, sched.max_steps)

    stats = E.StepStats()
    callback = E.PhaseMetrics("pretrain", ctx.stage_dir, ctx.is_main, step_stats=stats, flops_per_token=per_token,
                              peak_flops=ctx.world_size * float(cfg.cluster.peak_tflops_per_device) * 1e12,
                              phase=phase, step_offset=at["step"], token_offset=at["tokens"])
    trainer = E.PretrainTrainer(model=model, args=args, train_dataset=train_ds, data_collator=default_data_collator,
                                processing_class=tokenizer, callbacks=[callback, stats])
    trainer.flops_per_token = per_token
    if lora.enabled(cfg, "pretrain"):
        trainer.lora_base = rebuild  # final.save_final merges the adapter into it
    sp = s.spike
    trainer.samples_per_step = sched.samples_per_step(s.seq_len)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    trainer.spike_guard = E.SpikeGuard(sp.policy, sp.factor, sp.ema_steps, sp.min_steps, sp.max_events,
                                       ctx.stage_dir / E.SPIKES, ctx.is_main)
    stop = E.Preemption(trainer)
    trainer.add_callback(stop)
    stop.install()
    callbacks.prepare_trainer(trainer, cfg, "pretrain")

    def position_data(checkpoint):  # after the samples earlier phases read
        step = resume.checkpoint_step(checkpoint)
        trainer.start_step = step
        trainer.start_sample = at["sample"] + step * trainer.samples_per_step + E.data_shift(ckpt_dir, step)

    output, resumed = resume.train(ctx, "pretrain", trainer, before_train=position_data, ckpt_dir=ckpt_dir)
    for h in hooks:
        h.remove()
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
    steps = int(trainer.state.global_step)
    facts = {"name": phase.name, "trainable": phase.trainable, "steps": steps,
             "tokens": int(trainer.state.num_input_tokens_seen), "trainable_parameters": int(trainable),
             "learning_rate": float(s.learning_rate), "final_loss": (callback.last or {}).get("loss"),
             "loss_spikes": trainer.spike_guard.events, "data_samples_skipped": E.data_shift(ckpt_dir),
             "end_sample": at["sample"] + steps * trainer.samples_per_step + E.data_shift(ckpt_dir),
             "model_info": model_info, "parameters": parameters}
    if phase.name is not None and ctx.is_main:
        phases.mark_done(ctx.stage_dir, phase, facts)
    barrier()
    return trainer, output, resumed, callback, sched, facts, model_info, parameters


def _release(trainer) -> None:
    """Free the previous phase's model, optimizer and DeepSpeed engine before the next phase builds its own."""
    import gc

    import torch

    trainer.accelerator.free_memory()
    trainer.model = trainer.model_wrapped = trainer.optimizer = trainer.lr_scheduler = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
