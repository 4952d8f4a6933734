"""tokenizer stage: a weighted sample of data/clean -> <run_dir>/tokenizer/ (see data_prep.tokenizer.build).

Trains a lossless sentencepiece tokenizer, or with tokenizer.extend_from adds Korean pieces to a
local base tokenizer; either way scores it (and tokenizer.baseline) on held-out text per source.
"""

from __future__ import annotations

from kgov_train.manifest import Manifest
from kgov_train.stages import StageContext, StageResult


def run(ctx: StageContext) -> StageResult:
    from data_prep.tokenizer.build import BuildSettings, build_tokenizer

    t = ctx.cfg.tokenizer
    settings = BuildSettings(
        model_type=t.model_type, vocab_size=t.vocab_size, character_coverage=t.character_coverage,
        input_sentence_size=t.input_sentence_size, max_sentence_length=t.max_sentence_length,
        split_digits=t.split_digits, num_threads=t.num_threads, seed=int(ctx.cfg.seed),
        user_defined_symbols=tuple(t.user_defined_symbols), morpheme_aware=t.morpheme_aware,
        sample_chars=t.sample_chars, heldout_fraction=t.heldout_fraction, heldout_chars=t.heldout_chars,
        extend_from=t.extend_from, baseline=t.baseline, chat_template=t.chat_template,
    )
    # the data stage counted the characters it kept per source: the sample's rates follow from them
    sources = Manifest.load(ctx.upstream["data"]).metrics.get("sources", {})
    chars = {name: int(v.get("chars_kept", 0)) for name, v in sources.items()}
    weights = {name: float(v.get("weight", 1.0)) for name, v in sources.items()}
    files, metrics = build_tokenizer(ctx.upstream["data"] / "clean", ctx.stage_dir, settings, chars, weights)
    return StageResult(outputs=files, metrics=metrics)
