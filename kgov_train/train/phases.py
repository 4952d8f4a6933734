"""Phases of one pretrain stage (`pretrain.phases`): e.g. the new embedding rows of a vocabulary extension trained
first with everything else frozen (EEVE-Korean, Chinese-LLaMA), then the whole model.

Each phase is a Trainer run of its own: its token budget (max_steps), learning rate, fresh optimizer and schedule,
trainable set, and checkpoints in checkpoints/phase-<i>-<name>/ (resumed exactly as a single-phase run's are). A
phase that finished leaves phase.json there (its facts) and is not redone; the next phase starts from the weights
of its last checkpoint and reads the data from where it stopped. metrics.jsonl numbers the steps across the stage
and names the phase of each row. No pretrain.phases: one phase, checkpoints/ as before.

trainable: `all`; `embeddings` (input and output embedding matrices, all else frozen); `new_embeddings` (only
the rows at or past the base vocabulary: a gradient hook zeroes the base rows' gradients, and weight decay is 0,
so AdamW leaves the base rows bit-identical).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kgov_train.run_folder import CHECKPOINTS
from kgov_train.train.model_files import set_special_tokens
from kgov_train.train.resume import ResumeError
from kgov_train.train.schedule import ScheduleError, pretrain_schedule

log = logging.getLogger("kgov_train")

DONE = "phase.json"
KEY = "pretrain.phases"


@dataclass
class Phase:
    index: int
    name: str | None  # None: the stage has no phases
    trainable: str
    spec: dict[str, Any]  # the recipe's entry, as recorded in phase.json

    @property
    def key(self) -> str:
        return f"{KEY}[{self.index}]"

    def ckpt_dir(self, stage_dir: Path) -> Path:
        root = stage_dir / CHECKPOINTS
        return root if self.name is None else root / f"phase-{self.index}-{self.name}"


def plan(s: DictConfig) -> list[Phase]:
    """cfg.pretrain's phases, or one unnamed phase of everything."""
    if not s.phases:
        return [Phase(0, None, "all", {})]
    return [Phase(i, str(p.name), str(p.trainable), OmegaConf.to_container(p, resolve=True, enum_to_str=True))
            for i, p in enumerate(s.phases)]


def phase_section(s: DictConfig, phase: Phase) -> DictConfig:
    """cfg.pretrain with the phase's budget and learning rate in place of the stage's."""
    if phase.name is None:
        return s
    out = OmegaConf.create(OmegaConf.to_container(s, resolve=True))
    out.tokens = phase.spec.get("tokens")
    out.max_steps = phase.spec.get("max_steps") or 0
    if phase.spec.get("learning_rate") is not None:
        out.learning_rate = phase.spec["learning_rate"]
    return out


def extended_vocabulary(cfg: DictConfig) -> bool:
    """The stage's tokenizer extends the tokenizer of the model it starts from (new rows follow the base rows)."""
    t = cfg.tokenizer
    mode = t.get("mode")
    if cfg.get("route") == "cpt":
        return mode == "extend"
    return bool(cfg.model.init_from) and (mode == "extend" or (mode is None and bool(t.get("extend_from"))))


def problems(cfg: DictConfig, world_size: int) -> list[str]:
    s = cfg.pretrain
    errors: list[str] = []
    if not s.phases:
        return errors
    if s.lora.enabled:
        errors.append(f"{KEY}: not combined with pretrain.lora.enabled=true (LoRA already trains the extended "
                      "embeddings in full through modules_to_save); drop one of them")
    seen: set[str] = set()
    for p in plan(s):
        before = len(errors)
        if not p.name or not p.name.replace("-", "").replace("_", "").isalnum():
            errors.append(f"{p.key}.name: letters, digits, - and _ only, got '{p.name}'")
        elif p.name in seen:
            errors.append(f"{p.key}.name: '{p.name}' is used by an earlier phase; names must be unique")
        seen.add(p.name)
        if p.trainable == "new_embeddings" and not extended_vocabulary(cfg):
            errors.append(f"{p.key}.trainable: new_embeddings needs an extended vocabulary (route=cpt with "
                          "tokenizer.mode=extend, or model.init_from with tokenizer.extend_from)")
        tokens, steps = p.spec.get("tokens"), p.spec.get("max_steps")
        if tokens is None and steps is None:
            errors.append(f"{p.key}: set tokens or max_steps (the phase's budget)")
        for k, v in (("tokens", tokens), ("max_steps", steps), ("learning_rate", p.spec.get("learning_rate"))):
            if v is not None and v <= 0:
                errors.append(f"{p.key}.{k}: must be > 0, got {v}")
        if len(errors) == before:
            try:
                pretrain_schedule(phase_section(s, p), world_size)
            except ScheduleError as e:
                errors.append(f"{p.key}: {e}")
    return errors


# ---------------------------------------------------------------------------------------------------------------------
# Trainable sets
# ---------------------------------------------------------------------------------------------------------------------


def embedding_weights(model) -> list:
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    return [emb] + ([head.weight] if head is not None and head.weight is not emb else [])


def restrict(model, trainable: str, base_rows: int | None) -> tuple[int, list]:
    """Freeze what the phase does not train; (trainable parameters, hook handles to remove after the phase).
    new_embeddings: rows below base_rows get zero gradients (a hook on each embedding matrix, tied ones once)."""
    if trainable == "all":
        return sum(p.numel() for p in model.parameters() if p.requires_grad), []
    weights = embedding_weights(model)
    keep = {id(w) for w in weights}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    if trainable == "embeddings":
        return sum(w.numel() for w in weights), []
    if base_rows is None:
        raise ValueError("trainable=new_embeddings: the model has no extended vocabulary (no base rows known)")
    handles = []
    for w in weights:  # a hook on the leaf: DeepSpeed accumulates (and reduces) the masked gradient

        def zero_base_rows(grad, n=base_rows):
            grad = grad.clone()
            grad[:n] = 0
            return grad

        handles.append(w.register_hook(zero_base_rows))
    shapes = [tuple(w.ds_shape) if hasattr(w, "ds_shape") else tuple(w.shape) for w in weights]  # ZeRO-3: full
    return sum((rows - base_rows) * width for rows, width in shapes), handles


def load_phase_model(checkpoint: Path, cfg: DictConfig, tokenizer):
    """The model a later phase starts from: the previous phase's last checkpoint (its saved HF weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32,
                                                 attn_implementation=cfg.model.attn_implementation)
    set_special_tokens(model, tokenizer)
    model.config.use_cache = False
    return model


# ---------------------------------------------------------------------------------------------------------------------
# Markers and metrics
# ---------------------------------------------------------------------------------------------------------------------


def done(stage_dir: Path, phase: Phase) -> dict[str, Any] | None:
    """phase.json of a finished phase; refuses one finished under another recipe entry."""
    path = phase.ckpt_dir(stage_dir) / DONE
    if phase.name is None or not path.is_file():
        return None
    facts = json.loads(path.read_text(encoding="utf-8"))
    if facts.get("spec") != phase.spec:
        raise ResumeError(f"{phase.key}: the phase finished in {path.parent} as {facts.get('spec')}, now "
                          f"{phase.spec}; restore it, or rerun with force=true to train this stage afresh")
    return facts


def mark_done(stage_dir: Path, phase: Phase, facts: dict[str, Any]) -> None:
    path = phase.ckpt_dir(stage_dir) / DONE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**facts, "spec": phase.spec}, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
