"""tokenizer stage: sentencepiece on data/clean -> <run_dir>/tokenizer/ (see data_prep.tokenizer.build)."""

from __future__ import annotations

from kgov_train.stages import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    from data_prep.tokenizer.build import FILES, build_tokenizer

    t = ctx.cfg.tokenizer
    metrics = build_tokenizer(
        ctx.upstream["data"] / "clean", ctx.stage_dir,
        model_type=t.model_type, vocab_size=t.vocab_size, character_coverage=t.character_coverage,
        input_sentence_size=t.input_sentence_size, max_sentence_length=t.max_sentence_length,
        split_digits=t.split_digits, num_threads=t.num_threads, seed=int(ctx.cfg.seed),
        chat_template=t.chat_template,
    )
    return StageResult(outputs=list(FILES), metrics=metrics)
