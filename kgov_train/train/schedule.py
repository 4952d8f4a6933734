"""The pretrain stage's batch and learning-rate schedule, given in tokens, turned into Trainer steps.

Pretraining budgets are stated in tokens (a 7B run: ~1T tokens, 4M tokens per step), while the
Trainer counts optimizer steps. One optimizer step consumes
    seq_len x micro_batch_size x world_size x gradient_accumulation_steps  tokens,
so global_batch_tokens fixes gradient_accumulation_steps, and tokens / warmup_tokens / decay_tokens
fix max_steps, the warmup and the decay (rounded up to whole steps).

Equal-compute budgets: pretrain.flops (instead of pretrain.tokens) sets the run's tokens D = flops / (6 N), N the
NON-embedding parameters of the model trained (neither the input embedding nor the LM head; planner.model.Shape
counts them from the recipe, without torch). Variants with other tokenizers or vocabularies then get the same
compute in the transformer body, whatever their embedding matrices weigh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant_with_warmup": "constant_with_warmup",
              "wsd": "warmup_stable_decay"}


class ScheduleError(ValueError):
    pass


@dataclass
class Schedule:
    micro_tokens: int  # tokens of one micro batch over all ranks
    gradient_accumulation_steps: int
    global_batch_tokens: int
    max_steps: int
    warmup_steps: int
    decay_steps: int | None  # wsd only
    scheduler: str  # the Trainer's lr_scheduler_type
    scheduler_kwargs: dict[str, Any]

    def samples_per_step(self, seq_len: int) -> int:
        return self.global_batch_tokens // seq_len


def flops_tokens(flops: float, non_embedding: int) -> int:
    """The tokens of a compute budget: D = flops / (6 N), N the non-embedding parameters (rounded up)."""
    return math.ceil(float(flops) / (6 * int(non_embedding)))


def budget_tokens(s: DictConfig, non_embedding: int | None = None) -> int | None:
    """The run's length in tokens: pretrain.tokens, else that of pretrain.flops (needs `non_embedding`), else None
    (pretrain.max_steps). Raises ScheduleError naming the keys."""
    flops = s.get("flops")
    if flops is None:
        return s.tokens
    if s.tokens is not None:
        raise ScheduleError(f"pretrain.tokens={s.tokens} and pretrain.flops={flops}: set one budget, not both "
                            "(flops: tokens = flops / (6 x non-embedding parameters))")
    if s.get("phases"):
        raise ScheduleError("pretrain.flops: not combined with pretrain.phases; give each phase its tokens or "
                            "max_steps (and drop pretrain.flops)")
    if not flops > 0:
        raise ScheduleError(f"pretrain.flops must be > 0, got {flops}")
    if not non_embedding or non_embedding <= 0:
        raise ScheduleError("pretrain.flops: the model's non-embedding parameters are unknown, so are its tokens")
    return flops_tokens(flops, non_embedding)


def pretrain_schedule(s: DictConfig, world_size: int, non_embedding: int | None = None) -> Schedule:
    """From cfg.pretrain and the number of ranks (and, for pretrain.flops, the non-embedding parameters of the model
    trained); raises ScheduleError naming the key."""
    if s.lr_scheduler_type not in SCHEDULERS:
        raise ScheduleError(f"pretrain.lr_scheduler_type: one of {sorted(SCHEDULERS)}, got '{s.lr_scheduler_type}'")
    micro = int(s.seq_len) * int(s.micro_batch_size) * int(world_size)
    if s.global_batch_tokens is not None:
        if s.global_batch_tokens <= 0 or s.global_batch_tokens % micro:
            raise ScheduleError(
                f"pretrain.global_batch_tokens={s.global_batch_tokens} must be a positive multiple of seq_len x "
                f"micro_batch_size x world size = {s.seq_len} x {s.micro_batch_size} x {world_size} = {micro}")
        accumulation = s.global_batch_tokens // micro
    else:
        accumulation = int(s.gradient_accumulation_steps)
    batch = micro * accumulation

    def steps(tokens: int | None, key: str) -> int | None:
        if tokens is None:
            return None
        if tokens < 0:
            raise ScheduleError(f"pretrain.{key} must be >= 0, got {tokens}")
        return math.ceil(tokens / batch)

    tokens = budget_tokens(s, non_embedding)
    max_steps = steps(tokens, "flops" if s.get("flops") is not None else "tokens") or int(s.max_steps)
    warmup = steps(s.warmup_tokens, "warmup_tokens")
    warmup = int(s.warmup_steps) if warmup is None else warmup
    decay = None
    kwargs: dict[str, Any] = {}
    name = SCHEDULERS[s.lr_scheduler_type]
    if s.lr_scheduler_type == "wsd":
        decay = steps(s.decay_tokens, "decay_tokens") or 0  # none yet: stable to the end, decay from a checkpoint later
        if warmup + decay > max_steps:
            raise ScheduleError(f"pretrain: warmup ({warmup} steps) + decay_tokens ({decay} steps) exceed the run's "
                                f"{max_steps} steps (pretrain.tokens / flops / max_steps)")
        # the Trainer passes num_training_steps=max_steps: stable = max_steps - warmup - decay
        kwargs = {"num_decay_steps": decay, "decay_type": "cosine", "min_lr_ratio": float(s.min_lr_ratio)}
    elif s.lr_scheduler_type == "cosine" and s.min_lr_ratio > 0:
        name, kwargs = "cosine_with_min_lr", {"min_lr_rate": float(s.min_lr_ratio)}
    return Schedule(micro, accumulation, batch, max_steps, warmup, decay, name, kwargs)
