"""The documents a public body publishes with a model: MODEL_CARD.md, bom.json and bom.cdx.json in each training
stage's final/.

    write_papers(run_dir, stage, final_dir=None, config=None, metrics=None, recipe_name=None, device=None)

writes the three from the run folder and the facts handed to it (see kgov_train.papers.facts for what is read,
kgov_train.papers.bom for the bom.json schema and kgov_train.papers.cyclonedx for bom.cdx.json, a CycloneDX 1.6
ML-BOM validated against the CycloneDX schema before it is written). A training stage calls it on rank 0 as it
saves final/ (kgov_train.train.final), while its own manifest is still `running`; for an existing run,
`python -m kgov_train.papers <run_dir> [stage ...]` writes them again from the sealed manifests.
The eval stage, which runs after them, writes the evaluated models' papers again with their bits per byte into
<run_dir>/eval/papers/<stage>/ (`write_evaluated`): the training stages' own final/ stay sealed as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kgov_train.papers.bom import FORMAT, build_bom
from kgov_train.papers.card import render_card
from kgov_train.papers.facts import PAPERS, gather, lineage
from kgov_train.run_folder import FINAL, is_training, read_manifest

__all__ = ["FORMAT", "PAPERS", "PapersError", "regenerate", "write_evaluated", "write_papers"]


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
    """Write MODEL_CARD.md, bom.json and bom.cdx.json about the model in final_dir (default
    <run_dir>/<stage>/final) into out_dir (default final_dir); returns their paths (keys card, bom, cyclonedx).

    config: the stage's resolved config as its manifest records it; None reads the stage manifest.
    metrics: what is known so far (steps, tokens_seen, world_size, parameters, zero_stage, flops_per_token),
    laid over the manifest's metrics. Raises PapersError, naming the folder, on any failure (bom.cdx.json failing
    CycloneDX 1.6 schema validation included: then nothing is written).
    """
    run_dir = Path(run_dir)
    final = Path(final_dir) if final_dir is not None else run_dir / stage / FINAL
    out = Path(out_dir) if out_dir is not None else final
    try:
        if not final.is_dir():
            raise FileNotFoundError(f"{final} does not exist; run stage '{stage}' first")
        facts = gather(run_dir, stage, final, config, metrics, recipe_name, device)
        bom = build_bom(facts)
        card = render_card(facts)
        paths = {"card": out / PAPERS[0], "bom": out / PAPERS[1], "cyclonedx": out / PAPERS[2]}
        # imported here: cyclonedx and its JSON-schema checker take ~1 s to import, paid by the writing rank only
        from kgov_train.papers.cyclonedx import render_cyclonedx

        cdx = render_cyclonedx(facts, str(paths["cyclonedx"]))  # validated before anything is written
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(paths["bom"], json.dumps(bom, indent=1, ensure_ascii=False) + "\n")
        _atomic_write(paths["cyclonedx"], cdx)
        _atomic_write(paths["card"], card + "\n")
    except PapersError:
        raise
    except Exception as e:
        raise PapersError(f"{stage}: could not write the model card and bill of materials "
                          f"({', '.join(PAPERS)}) into {out}: {type(e).__name__}: {e}") from e
    return paths


REGENERATED = "papers"


def sealed_papers(run_dir: Path, stage: str) -> bool:
    """Whether the stage's manifest seals papers in final/: rewriting them would break that seal (and the inputs
    of the stages after it), so they are regenerated into <stage_dir>/papers/ instead."""
    m = read_manifest(run_dir / stage)
    return any(o.get("path") in (f"final/{p}" for p in PAPERS) for o in m.get("outputs", []))


def regenerate(run_dir: Path | str, stages: list[str] | None = None) -> list[Path]:
    """Write the papers again for every (or the named) training stage of an existing run that has a final/:
    into final/ when the stage's manifest does not seal papers there (runs from before they existed), else into
    <run_dir>/<stage>/papers/."""
    run_dir = Path(run_dir)
    found = [p.name for p in run_dir.iterdir() if is_training(p.name) and (p / FINAL).is_dir()] \
        if run_dir.is_dir() else []
    names = stages or sorted(found, key=lambda n: len(lineage(run_dir, n)))
    if not names:
        raise PapersError(f"{run_dir}: no training stage with a final/ folder (pretrain, sft, dpo)")
    written = []
    for name in names:
        out = run_dir / name / REGENERATED if sealed_papers(run_dir, name) else None
        written += list(write_papers(run_dir, name, out_dir=out).values())
    return written


def write_evaluated(run_dir: Path | str, stages: list[str], out_root: Path | str) -> list[Path]:
    """The papers of the training stages the eval stage evaluated (others, e.g. the imported base, are skipped),
    with <run_dir>/eval/report.json's results, into <out_root>/<stage>/; returns the paths written."""
    written: list[Path] = []
    for stage in (s for s in stages if is_training(s)):
        written += list(write_papers(run_dir, stage, out_dir=Path(out_root) / stage).values())
    return written
