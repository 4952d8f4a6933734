"""dpo stage: direct preference optimisation (TRL DPOTrainer) of the last SFT stage's model.

Data: dpo's datasets (kgov_train.chat: prompt/chosen/rejected, conversational or plain strings, mixed by weight,
a validation split of held-out pairs, rejects kept in rejects/). The reference is the SFT model: a frozen copy
(partitioned under ZeRO-3), or with LoRA the same model with its adapter disabled, or its log-probs precomputed.
The held-out pairs are scored after training by the trained policy and by the reference (= the model before
training): kgov_train.train.preference. torch, transformers and TRL are imported inside run().
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from kgov_train.run_folder import StageContext, StageResult
from kgov_train.stages import chain
from kgov_train.stages.checks import chat_problems
from kgov_train.train.chat_stage import external_inputs as chat_inputs

log = logging.getLogger("kgov_train")

_REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


def check(cfg: DictConfig, name: str = "dpo") -> list[str]:
    errors = chat_problems(cfg, name)
    if not cfg.dpo.beta > 0:
        errors.append(f"dpo.beta: must be > 0, got {cfg.dpo.beta}")
    start = cfg.dpo.get("from_stage")
    models = [s.name for s in chain(cfg) if s.name == "base" or s.distributed][:-1]  # those before dpo
    if start is not None and start not in models:
        errors.append(f"dpo.from_stage: one of the stages before dpo that hand on a model {models}, got '{start}'")
    return errors


def external_inputs(cfg: DictConfig, name: str = "dpo") -> list[Path]:
    return chat_inputs(cfg, name)


def run(ctx: StageContext) -> StageResult:
    from transformers import set_seed
    from trl import DPOConfig

    from kgov_train.train import arguments, callbacks, final, preference, resume
    from kgov_train.train import chat_stage as C
    from kgov_train.train.model_files import count_parameters, load_model_dir, set_special_tokens

    cfg, st, base = ctx.cfg, C.ChatStage.of(ctx), ctx.base
    s = st.s
    callbacks.quiet_nonzero_ranks(ctx)

    set_seed(cfg.seed)
    args = DPOConfig(
        **arguments.training_kwargs(cfg, "dpo", ctx.stage_dir, world_size=ctx.world_size),
        max_length=int(s.max_length),
        beta=float(s.beta),
        loss_type=[str(s.loss_type)],
        precompute_ref_log_probs=bool(s.precompute_ref_log_probs),
    )
    # After the args: under ZeRO-3 the models are loaded partitioned.
    model, tokenizer, peft_config = C.load_model(ctx, st)
    ref_model = None  # LoRA: the policy with its adapter disabled; precomputed: TRL scores the policy before training
    if preference.needs_reference_model(peft_config is not None, bool(s.precompute_ref_log_probs)):
        ref_model, _ = load_model_dir(base, "dpo (reference)", cfg.model.attn_implementation)
        set_special_tokens(ref_model, tokenizer)
        ref_model.config.use_cache = False
    data = C.load_data(ctx, st, tokenizer)
    parameters = count_parameters(model)

    callback = callbacks.MetricsCallback("dpo", ctx.stage_dir, ctx.is_main)
    train, validation = C.to_dataset(data.train), C.to_dataset(data.validation) if data.validation else None
    if s.precompute_ref_log_probs:  # TRL caches the reference log-probs next to a file-backed dataset
        train = preference.shared_dataset(train, ctx.stage_dir / "datasets" / "train", ctx.is_main)
        if validation is not None:
            validation = preference.shared_dataset(validation, ctx.stage_dir / "datasets" / "validation", ctx.is_main)
    trainer = preference.PreferenceTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train,
                                           eval_dataset=validation, processing_class=tokenizer, callbacks=[callback],
                                           peft_config=peft_config)
    callbacks.prepare_trainer(trainer, cfg, "dpo")
    if ctx.is_main:
        t = data.stats["totals"]
        log.info("dpo: %d preference pairs (%d rejected, %s truncated, %s dropped), %d held out, beta %s, loss %s, "
                 "reference %s, from %s", len(data.train), t["rejected"], t["truncated"], t["dropped"],
                 len(data.validation), s.beta, s.loss_type, _reference(peft_config, s), base)
    output, resumed = resume.train(ctx, "dpo", trainer)
    # After training (under DeepSpeed it must be): the held-out pairs scored by the trained policy and by the
    # reference, which is the model before training.
    held_out = preference.heldout_metrics(trainer) if validation is not None else None

    rows = callbacks.logged_steps(ctx, callback)
    last = rows[-1] if rows else {}
    extra = {
        **C.data_metrics(data, trainer),
        **C.lora_metrics(st, trainer),
        "beta": float(s.beta),
        "loss_type": str(s.loss_type),
        "reference": _reference(peft_config, s),
        **{"final_" + k.replace("/", "_"): last.get(k) for k in _REWARDS},  # the last logged step (a few pairs)
        **{"mean_" + k.replace("/", "_"): _mean([r.get(k) for r in rows]) for k in _REWARDS},  # over all steps
        "held_out": held_out,
    }
    if ctx.is_main and held_out:
        log.info("dpo: %d held-out pairs: chosen preferred (log-prob) %s before -> %s after; reward accuracy %s, "
                 "margin %s", held_out["pairs"], held_out["logp_accuracy_before"], held_out["logp_accuracy"],
                 held_out["reward_accuracy"], held_out["reward_margin"])
    return final.finish(ctx, "dpo", trainer, output, resumed, callback, parameters, extra, outputs=[C.REJECTS])


def _reference(peft_config, s) -> str:
    if peft_config is not None:
        return "base with the LoRA adapter disabled"
    return "precomputed log-probs of the SFT model" if s.precompute_ref_log_probs else "a frozen copy of the SFT model"


def _mean(values: list) -> float | None:
    values = [v for v in values if isinstance(v, (int, float))]
    return round(sum(values) / len(values), 6) if values else None
