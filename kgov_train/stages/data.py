"""data stage: the recipe's corpus files -> clean/ and rejected/ (jsonl.gz), via data_prep.corpus.

Metrics promise docs_in == docs_kept + docs_rejected; rejected/ holds every dropped
record with its reason and file:line.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from kgov_train.config.validate import RecipeError, resolve_globs
from kgov_train.stages import StageContext, StageResult

log = logging.getLogger("kgov_train")


def external_inputs(cfg: DictConfig) -> list[Path]:
    from data_prep.corpus import FORMATS, input_format

    files = resolve_globs(list(cfg.data.inputs), "data.inputs")
    unsupported = [str(f) for f in files if input_format(f) is None]
    if unsupported:
        shown = ", ".join(unsupported[:5]) + (f" (+{len(unsupported) - 5} more)" if len(unsupported) > 5 else "")
        raise RecipeError(f"data.inputs: unsupported file type: {shown}; readable: {', '.join(FORMATS)}")
    return files


def run(ctx: StageContext) -> StageResult:
    from data_prep.corpus import CorpusSettings, prepare_corpus

    d = ctx.cfg.data
    settings = CorpusSettings(
        text_key=d.text_key, id_key=d.id_key, source=d.source, license=d.license,
        min_chars=d.min_chars, max_chars=d.max_chars, tasks=d.tasks, workers=d.workers, compression=d.compression,
    )
    report = prepare_corpus(external_inputs(ctx.cfg), ctx.stage_dir, settings)
    if report.docs_kept == 0:
        raise RuntimeError(
            f"data stage kept 0 of {report.docs_in} documents; rejects by reason: {report.rejects_summary()}; "
            f"see {ctx.stage_dir / 'rejected'}"
            + (f" (data.min_chars={d.min_chars})" if report.rejected_by_reason.get("too_short") else ""))
    return StageResult(outputs=["clean", "rejected"], metrics=report.metrics())
