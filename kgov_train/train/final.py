"""The end of a training stage: final/ saved (weights, tokenizer, papers) and the stage's outputs and metrics."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

from kgov_train.papers import PapersError, write_papers
from kgov_train.run_folder import FINAL, METRICS, StageContext, StageResult
from kgov_train.train import lora
from kgov_train.train.arguments import zero_stage
from kgov_train.train.callbacks import MetricsCallback, logged_steps
from kgov_train.train.distributed import barrier
from kgov_train.train.model_files import count_parameters, set_special_tokens

log = logging.getLogger("kgov_train")


def save_final(ctx: StageContext, trainer, tokenizer, known: dict[str, Any] | None = None) -> Path:
    """<stage_dir>/final: safetensors weights, config, generation config, tokenizer (with its chat template) and the
    model's papers (MODEL_CARD.md, bom.json, bom.cdx.json: kgov_train.papers), which also report `known` (the stage's figures).

    Every rank must call it: under ZeRO-3, save_model gathers the partitioned 16-bit weights collectively.
    """
    final = ctx.stage_dir / FINAL
    if ctx.is_main and final.exists():
        shutil.rmtree(final)
    barrier()
    model = trainer.accelerator.unwrap_model(trainer.model)
    set_special_tokens(model, tokenizer)
    model.config.use_cache = True
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.use_cache = True
    if lora.is_lora_trainer(trainer):
        # final/ is the base with the adapter merged in (a standalone model); the adapter is kept in adapter/
        # the merge base: the trainer's own (pretrain rebuilds the model it built), else the model the stage followed
        base = getattr(trainer, "lora_base", None) or ctx.base
        lora.save_merged(trainer, final, base=base, is_main=ctx.is_main, tokenizer=tokenizer)
    else:
        trainer.save_model(str(final))
    if ctx.is_main:
        tokenizer.save_pretrained(final)
        (final / "training_args.bin").unlink(missing_ok=True)  # a pickle of the arguments; the manifest has the config
        if not any(final.glob("*.safetensors")):
            raise RuntimeError(f"{final}: save_model wrote no safetensors weights")
        write_stage_papers(ctx, trainer, final, known)  # the papers; raises PapersError naming the folder
    barrier()
    return final


def write_stage_papers(ctx: StageContext, trainer, final: Path, known: dict[str, Any] | None = None) -> dict[str, Path]:
    """The papers of the model in `final` (rank 0, inside save_final): the facts of the live run handed to
    kgov_train.papers; the stage's config is the one its manifest (status running) records.
    `known`: the stage's own figures so far (validation loss, dpo's held-out pairs, ...)."""
    name = ctx.stage_dir.name
    try:
        model = trainer.accelerator.unwrap_model(trainer.model)
        fpt = [c.flops_per_token for c in trainer.callback_handler.callbacks
               if isinstance(c, MetricsCallback) and c.flops_per_token]
        metrics = {"steps": int(trainer.state.global_step), "tokens_seen": int(trainer.state.num_input_tokens_seen),
                   "world_size": int(ctx.world_size), "parameters": _shipped_parameters(model, final),
                   "zero_stage": zero_stage(ctx.cfg, name, ctx.world_size)}
        if fpt:
            metrics["flops_per_token"] = fpt[0]
        metrics = {**metrics, **(known or {})}  # the stage's own totals win (pretrain's phases: one trainer each)
        recipe, device = str(ctx.cfg.recipe_name), str(ctx.cfg.cluster.device)
    except Exception as e:
        raise PapersError(f"could not collect the facts for the model card of {final}: {type(e).__name__}: {e}") from e
    return write_papers(ctx.run_dir, name, final, None, metrics, recipe, device)


def _shipped_parameters(model, final: Path) -> int:
    """Parameters of the model in final/: the trained model's, or with LoRA the merged model's (the peft model
    also holds the adapter matrices, which the merge folds into the base weights)."""
    from accelerate.utils import is_peft_model
    from safetensors import safe_open

    if not is_peft_model(model):
        return count_parameters(model)
    total = 0
    for f in final.glob("*.safetensors"):
        with safe_open(f, framework="pt") as st:
            for key in st.keys():
                total += math.prod(st.get_slice(key).get_shape())
    return total


def finish(ctx: StageContext, name: str, trainer, output, resumed_from: Path | None, callback: MetricsCallback,
           parameters: int, extra: dict[str, Any] | None = None, outputs: list[str] = ()) -> StageResult:
    """Save final/ and return the stage's outputs (final/, metrics.jsonl and `outputs`) and metrics (identical on
    every rank; rank 0's are sealed)."""
    save_final(ctx, trainer, tokenizer=trainer.processing_class, known=extra)
    rows = logged_steps(ctx, callback)
    last = rows[-1] if rows else {}
    runtime = float(output.metrics.get("train_runtime", 0.0))
    session_tokens = trainer.state.num_input_tokens_seen - callback.start_tokens
    metrics: dict[str, Any] = {
        "steps": int(trainer.state.global_step),
        "final_loss": last.get("loss"),
        "train_runtime": round(runtime, 2),
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "tokens_per_sec": round(session_tokens / runtime, 1) if runtime > 0 else None,
        "world_size": ctx.world_size,
        "zero_stage": zero_stage(ctx.cfg, name, ctx.world_size),
        "parameters": parameters,
        "resumed_from_step": callback.start_step if resumed_from is not None else None,
        "logged_steps": len(rows),
    }
    metrics.update(extra or {})
    if lora.is_lora_trainer(trainer):
        outputs = [*outputs, lora.ADAPTER]
    return StageResult(outputs=[FINAL, METRICS, *outputs], metrics=metrics)
