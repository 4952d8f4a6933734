"""shards stage: data/clean tokenised with tokenizer/tokenizer.json -> <run_dir>/shards/ (see data_prep.shards).

The train mixture takes each source's weight from the data stage's manifest (metrics.sources.<name>.weight, the
recipe's data.sources[].weight) as its target share of train tokens.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from data_prep.shards.write import MixtureError, output_files, write_shards
from kgov_train.manifest import MANIFEST, Manifest
from kgov_train.run_folder import StageContext, StageResult

log = logging.getLogger("kgov_train")


def check(cfg: DictConfig, name: str = "shards") -> list[str]:
    s, errors = cfg.shards, []
    if not 0 <= s.validation_fraction < 1:
        errors.append("shards.validation_fraction: in [0, 1)")
    if s.workers < 1:
        errors.append(f"shards.workers: must be >= 1, got {s.workers}")
    return errors


def source_weights(data_dir: Path) -> dict[str, float] | None:
    """{source: weight} from the data stage's manifest; None when it records no sources (no mixing)."""
    m = Manifest.load(data_dir)
    sources = (m.metrics if m else {}).get("sources") or {}
    weights = {}
    for name, entry in sources.items():
        if not isinstance(entry, dict) or "weight" not in entry:
            raise ValueError(f"{data_dir / MANIFEST}: key 'metrics.sources.{name}.weight' missing; "
                             "rerun the data stage")
        weights[name] = float(entry["weight"])
    return weights or None


def run(ctx: StageContext) -> StageResult:
    s = ctx.cfg.shards
    data_dir = ctx.upstream["data"]
    weights = source_weights(data_dir)
    if weights is None:
        log.warning("shards: %s records no per-source weights; the train split is not mixed", data_dir / MANIFEST)
    try:
        metrics = write_shards(
            data_dir / "clean", ctx.upstream["tokenizer"], ctx.stage_dir,
            validation_fraction=s.validation_fraction, min_validation_docs=s.min_validation_docs,
            max_tokens_per_file=s.max_tokens_per_file, batch_size=s.batch_size, workers=s.workers,
            weights=weights, seed=s.seed,
        )
    except MixtureError as e:
        raise MixtureError(f"{e} (weights from {data_dir / MANIFEST}, key 'metrics.sources')") from None
    return StageResult(outputs=output_files(ctx.stage_dir), metrics=metrics)
