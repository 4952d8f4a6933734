"""The documents a public body publishes with a model: MODEL_CARD.md and bom.json in each training stage's final/.

    write_papers(run_dir, stage, final_dir=None, config=None, metrics=None, recipe_name=None, device=None)

writes both from the run folder (see kgov_train.papers.facts for what is read and kgov_train.papers.bom for the
bom.json schema). save_final() calls it on rank 0 through write_from_training(), while the stage's own manifest is
still `running`; for an existing run, `python -m kgov_train.papers <run_dir> [stage ...]` writes them again from the
sealed manifests.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from kgov_train.papers.bom import FORMAT, build_bom
from kgov_train.papers.card import render_card
from kgov_train.papers.facts import PAPERS, gather, is_training, lineage

__all__ = ["FORMAT", "PAPERS", "PapersError", "write_papers", "write_from_training"]


class PapersError(RuntimeError):
    """The model card or bill of materials could not be written."""


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_papers(run_dir: Path | str, stage: str, final_dir: Path | str | None = None,
                 config: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
                 recipe_name: str | None = None, device: str | None = None,
                 out_dir: Path | str | None = None) -> dict[str, Path]:
    """Write MODEL_CARD.md and bom.json about the model in final_dir (default <run_dir>/<stage>/final) into
    out_dir (default final_dir); returns their paths.

    config: the stage's resolved config as its manifest records it (pipeline.stage_config); None reads the stage
    manifest. metrics: what is known so far (steps, tokens_seen, world_size, parameters, zero_stage,
    flops_per_token), laid over the manifest's metrics. Raises PapersError, naming the folder, on any failure.
    """
    run_dir = Path(run_dir)
    final = Path(final_dir) if final_dir is not None else run_dir / stage / "final"
    out = Path(out_dir) if out_dir is not None else final
    try:
        if not final.is_dir():
            raise FileNotFoundError(f"{final} does not exist; run stage '{stage}' first")
        facts = gather(run_dir, stage, final, config, metrics, recipe_name, device)
        bom = build_bom(facts)
        card = render_card(facts)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"card": out / PAPERS[0], "bom": out / PAPERS[1]}
        _atomic_write(paths["bom"], json.dumps(bom, indent=1, ensure_ascii=False) + "\n")
        _atomic_write(paths["card"], card + "\n")
    except PapersError:
        raise
    except Exception as e:
        raise PapersError(f"{stage}: could not write the model card and bill of materials "
                          f"({', '.join(PAPERS)}) into {out}: {type(e).__name__}: {e}") from e
    return paths


def write_from_training(ctx, trainer, final: Path, known: dict[str, Any] | None = None) -> dict[str, Path]:
    """write_papers() for a training stage from inside save_final (rank 0): config and metrics of the live run;
    `known`: the stage's own figures so far (validation loss, dpo's held-out pairs, ...)."""
    from kgov_train.pipeline import stage_config
    from kgov_train.stages import by_name
    from kgov_train.train import common

    try:
        name = ctx.stage_dir.name
        model = trainer.accelerator.unwrap_model(trainer.model)
        fpt = [c.flops_per_token for c in trainer.callback_handler.callbacks
               if isinstance(c, common.MetricsCallback) and c.flops_per_token]
        metrics = {"steps": int(trainer.state.global_step), "tokens_seen": int(trainer.state.num_input_tokens_seen),
                   "world_size": int(ctx.world_size), "parameters": _shipped_parameters(model, final),
                   "zero_stage": common.zero_stage(ctx.cfg, name, ctx.world_size)}
        if fpt:
            metrics["flops_per_token"] = fpt[0]
        metrics = {**(known or {}), **metrics}
        config = stage_config(ctx.cfg, by_name(ctx.cfg, name))
        recipe, device = str(ctx.cfg.recipe_name), str(ctx.cfg.cluster.device)
    except Exception as e:
        raise PapersError(f"could not collect the facts for the model card of {final}: {type(e).__name__}: {e}") from e
    return write_papers(ctx.run_dir, name, final, config, metrics, recipe, device)


def _shipped_parameters(model, final: Path) -> int:
    """Parameters of the model in final/: the trained model's, or with LoRA the merged model's (the peft model
    also holds the adapter matrices, which the merge folds into the base weights)."""
    from accelerate.utils import is_peft_model

    from kgov_train.train import common

    if not is_peft_model(model):
        return common.count_parameters(model)
    from safetensors import safe_open

    total = 0
    for f in final.glob("*.safetensors"):
        with safe_open(f, framework="pt") as st:
            for key in st.keys():
                total += math.prod(st.get_slice(key).get_shape())
    return total


REGENERATED = "papers"


def sealed_papers(run_dir: Path, stage: str) -> bool:
    """Whether the stage's manifest seals papers in final/: rewriting them would break that seal (and the inputs
    of the stages after it), so they are regenerated into <stage_dir>/papers/ instead."""
    try:
        m = json.loads((run_dir / stage / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return any(o.get("path") in (f"final/{p}" for p in PAPERS) for o in m.get("outputs", []))


def regenerate(run_dir: Path | str, stages: list[str] | None = None) -> list[Path]:
    """Write the papers again for every (or the named) training stage of an existing run that has a final/:
    into final/ when the stage's manifest does not seal papers there (runs from before they existed), else into
    <run_dir>/<stage>/papers/."""
    run_dir = Path(run_dir)
    found = [p.name for p in run_dir.iterdir() if is_training(p.name) and (p / "final").is_dir()] \
        if run_dir.is_dir() else []
    names = stages or sorted(found, key=lambda n: len(lineage(run_dir, n)))
    if not names:
        raise PapersError(f"{run_dir}: no training stage with a final/ folder (pretrain, sft, dpo)")
    written = []
    for name in names:
        out = run_dir / name / REGENERATED if sealed_papers(run_dir, name) else None
        written += list(write_papers(run_dir, name, out_dir=out).values())
    return written
