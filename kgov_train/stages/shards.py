"""shards stage: data/clean tokenised with tokenizer/tokenizer.json -> <run_dir>/shards/ (see data_prep.shards)."""

from __future__ import annotations

from kgov_train.stages import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    from data_prep.shards.write import output_files, write_shards

    s = ctx.cfg.shards
    metrics = write_shards(
        ctx.upstream["data"] / "clean", ctx.upstream["tokenizer"], ctx.stage_dir,
        validation_fraction=s.validation_fraction, min_validation_docs=s.min_validation_docs,
        max_tokens_per_file=s.max_tokens_per_file, batch_size=s.batch_size,
    )
    return StageResult(outputs=output_files(ctx.stage_dir), metrics=metrics)
