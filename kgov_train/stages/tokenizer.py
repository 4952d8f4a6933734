"""tokenizer stage: a weighted sample of data/clean -> <run_dir>/tokenizer/ (see data_prep.tokenizer.build).

tokenizer.mode: train a lossless sentencepiece tokenizer; extend a base tokenizer (tokenizer.extend_from, or on the
cpt route the imported base model's) with Korean pieces; or use the base tokenizer as it is (base). Either way it
is scored (with tokenizer.baseline) on held-out text per source.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from data_prep.tokenizer.build import BuildSettings, build_tokenizer
from data_prep.tokenizer.specials import user_defined
from kgov_train.manifest import Manifest
from kgov_train.run_folder import StageContext, StageResult, model_folder


def mode(cfg: DictConfig) -> str:
    """tokenizer.mode, or the route's default: base on cpt; extend with tokenizer.extend_from, else train."""
    if cfg.tokenizer.mode is not None:
        return str(cfg.tokenizer.mode)
    if str(cfg.route) == "cpt":
        return "base"
    return "extend" if cfg.tokenizer.extend_from else "train"


def check(cfg: DictConfig, name: str = "tokenizer") -> list[str]:
    t, errors = cfg.tokenizer, []
    if t.vocab_size < 300:
        errors.append(f"tokenizer.vocab_size: at least 300 (256 byte pieces + specials), got {t.vocab_size}")
    if not 0 < t.character_coverage <= 1:
        errors.append("tokenizer.character_coverage: in (0, 1]")
    if not 0 <= t.heldout_fraction < 1:
        errors.append(f"tokenizer.heldout_fraction: in [0, 1), got {t.heldout_fraction}")
    n = t.input_sentence_size
    if not (n == 0 or n > 100):
        errors.append(f"tokenizer.input_sentence_size: 0 (all) or more than 100 (sentencepiece's minimum), got {n}")
    if t.sample_chars <= 0:
        errors.append(f"tokenizer.sample_chars: must be > 0, got {t.sample_chars}")
    try:
        user_defined(list(t.user_defined_symbols))
    except ValueError as e:
        errors.append(str(e))
    m, cpt = mode(cfg), str(cfg.route) == "cpt"
    if cpt and m == "train":
        errors.append("tokenizer.mode: train makes new ids the base model's embeddings know nothing of; on route=cpt "
                      "use base (its tokenizer as it is) or extend (Korean pieces added to it)")
    if not cpt and m in ("extend", "base") and not t.extend_from:
        errors.append(f"tokenizer.extend_from: mode {m} on route={cfg.route} needs the local tokenizer folder to "
                      f"{'extend' if m == 'extend' else 'use as it is'}")
    if cpt and t.extend_from:
        errors.append("tokenizer.extend_from: on route=cpt the base model's tokenizer is used; remove the key")
    for key in ("extend_from", "baseline"):  # local folders only: nothing is fetched from a hub
        folder = t[key]
        if folder is not None and not (Path(folder) / "tokenizer.json").is_file():
            errors.append(f"tokenizer.{key}: {folder} is not a local tokenizer folder (no tokenizer.json)")
    return errors


def run(ctx: StageContext) -> StageResult:
    t = ctx.cfg.tokenizer
    settings = BuildSettings(
        model_type=t.model_type, vocab_size=t.vocab_size, character_coverage=t.character_coverage,
        input_sentence_size=t.input_sentence_size, max_sentence_length=t.max_sentence_length,
        split_digits=t.split_digits, num_threads=t.num_threads, seed=int(ctx.cfg.seed),
        user_defined_symbols=tuple(t.user_defined_symbols), morpheme_aware=t.morpheme_aware,
        sample_chars=t.sample_chars, heldout_fraction=t.heldout_fraction, heldout_chars=t.heldout_chars,
        extend_from=str(model_folder(ctx.upstream["base"])) if "base" in ctx.upstream else t.extend_from,
        mode=mode(ctx.cfg), baseline=t.baseline, chat_template=t.chat_template,
    )
    # the data stage counted the characters it kept per source: the sample's rates follow from them
    sources = Manifest.load(ctx.upstream["data"]).metrics.get("sources", {})
    chars = {name: int(v.get("chars_kept", 0)) for name, v in sources.items()}
    weights = {name: float(v.get("weight", 1.0)) for name, v in sources.items()}
    files, metrics = build_tokenizer(ctx.upstream["data"] / "clean", ctx.stage_dir, settings, chars, weights)
    return StageResult(outputs=files, metrics=metrics)
