"""Tokenizer folder from the clean corpus: train (or extend a base tokenizer), export, check, report.
Used by kgov_train.stages.tokenizer.

<out_dir>/tokenizer.model        sentencepiece model (the reference; not when extending a base)
<out_dir>/tokenizer.json         the tokenizer for `tokenizers` / transformers
<out_dir>/tokenizer_config.json  special tokens, chat template; AutoTokenizer.from_pretrained(out_dir)
<out_dir>/extension.json         when extending: the added pieces and the base pieces that spelled them
<out_dir>/report.json, report.md figures on held-out text per source, beside the recipe's baseline
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from data_prep.tokenizer import chat_template as CT
from data_prep.tokenizer import evaluate as E
from data_prep.tokenizer import report as RPT
from data_prep.tokenizer.corpus import clean_files, iter_records
from data_prep.tokenizer.export import export
from data_prep.tokenizer.sample import Sampler, source_rates
from data_prep.tokenizer.train import train_sentencepiece

log = logging.getLogger("kgov_train")

FILES = ["tokenizer.model", "tokenizer.json", "tokenizer_config.json"]
EXTENDED_FILES = ["tokenizer.json", "tokenizer_config.json", "extension.json"]
EVAL_CHARS = 5_000_000  # fallback scoring sample when no document is held out (tiny corpora)
EXTEND_SAMPLE_WARN = 50_000_000


class TokenizerCheckError(RuntimeError):
    pass


@dataclass
class BuildSettings:
    model_type: str = "bpe"
    vocab_size: int = 32000
    character_coverage: float = 0.9995
    input_sentence_size: int = 2_000_000
    max_sentence_length: int = 16384
    split_digits: bool = True
    num_threads: int = 2
    seed: int = 0
    user_defined_symbols: tuple[str, ...] = ()
    morpheme_aware: bool = False
    sample_chars: int = 200_000_000
    heldout_fraction: float = 0.01
    heldout_chars: int = 2_000_000
    extend_from: Optional[str] = None  # the base tokenizer folder of mode extend / base
    mode: Optional[str] = None  # train | extend (Korean pieces added to extend_from) | base (extend_from as it is);
    # None: extend with extend_from, else train

    def __post_init__(self):
        if self.mode is None:
            self.mode = "extend" if self.extend_from else "train"
    baseline: Optional[str] = None
    chat_template: Optional[str] = None


def build_tokenizer(clean_dir: Path, out_dir: Path, settings: BuildSettings,
                    source_chars: dict[str, int] | None = None, weights: dict[str, float] | None = None) -> tuple[list[str], dict]:
    """Train (or extend) on a weighted sample of clean_dir; write the files into out_dir; (file names, metrics).

    source_chars/weights: characters per source in clean_dir and the recipe's source weights (from the
    data stage); without them every document is sampled.
    """
    s = settings
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    template = s.chat_template or CT.DEFAULT_CHAT_TEMPLATE
    chat = CT.check(template)  # a broken template fails here, before training
    if s.mode != "train" and not s.extend_from:
        raise ValueError(f"tokenizer mode {s.mode} needs the base tokenizer's folder")
    if not chat["has_generation"] and s.mode == "train":
        log.warning("tokenizer.chat_template has no %s block: sft.assistant_only_loss=true will fail", "{% generation %}")
    baseline = RPT.load_tokenizer_json(s.baseline) if s.baseline else None  # a bad path fails before training

    files = clean_files(clean_dir)
    rates = source_rates(source_chars or {}, weights or {}, s.sample_chars, s.heldout_fraction)
    sampler = Sampler(rates, s.heldout_fraction, s.heldout_chars)
    fallback: list[tuple[str, str]] = []

    def texts():
        budget = EVAL_CHARS
        for text in sampler.training_texts(iter_records(files)):
            if budget > 0:
                fallback.append((f"train:{len(fallback)}", text))
                budget -= len(text)
            yield text

    if s.mode == "base":
        names, metrics = _keep(s, texts(), out_dir)
    elif s.mode == "extend":
        names, metrics = _extend(s, texts(), out_dir, template)
    else:
        names, metrics = _train(s, texts(), out_dir, template)

    heldout = sampler.heldout
    scored_on = "held-out documents (never in the training sample)"
    if not heldout:  # a corpus too small to hold any document out
        heldout, scored_on = {"all sources": fallback}, "training documents (no document was held out)"
    from tokenizers import Tokenizer

    candidates = {"ours": Tokenizer.from_file(str(out_dir / "tokenizer.json"))}
    if s.mode == "extend":
        candidates["base"] = RPT.load_tokenizer_json(s.extend_from)
    if baseline is not None:
        candidates["baseline"] = baseline
    evaluation = RPT.evaluate(candidates, heldout)
    ours = evaluation["ours"]["all"]
    if s.mode == "train":  # tokenizer.json must give sentencepiece's ids on real text, not just the probes
        sp, fast = E.load(out_dir)
        agree = E.compare(sp, fast, [d for docs in heldout.values() for d in docs])
        metrics["fast_matches_spm"] = not agree.mismatches
        if agree.mismatches:
            log.warning("tokenizer: tokenizer.json and tokenizer.model give different ids on %d of %d documents "
                        "(first: %s)", len(agree.mismatches), agree.documents, agree.mismatches[0])
    if ours["roundtrip_exact"] < 1.0:
        log.warning("tokenizer: %d of %d held-out documents do not round-trip (first: %s); U+2581 '▁' in the text "
                    "is the known cause", ours["documents"] - ours["exact"], ours["documents"], ours["roundtrip_failures"])
    # no timings in the report: the same corpus and settings give the same bytes (the manifest has train_seconds)
    report = {"tokenizer": {k: metrics[k] for k in ("vocab_size", "model_type") if k in metrics},
              "scored_on": scored_on, "evaluation": evaluation, **sampler.metrics()}
    names += RPT.write_reports(out_dir, report)
    metrics.update({
        **sampler.metrics(),
        "heldout_chars_per_token": ours["chars_per_token"], "heldout_bytes_per_token": ours["bytes_per_token"],
        "heldout_byte_fallback_rate": ours["byte_fallback_rate"], "heldout_unk_rate": ours["unk_rate"],
        "heldout_roundtrip_exact": ours["roundtrip_exact"], "roundtrip_ok": ours["roundtrip_exact"] == 1.0,
    })
    for name in candidates:
        if name != "ours":
            metrics[f"{name}_heldout_chars_per_token"] = evaluation[name]["all"]["chars_per_token"]
    if s.mode != "train":  # the base's own chat template (if any) stays: our role markers are not in its vocabulary
        metrics["chat_template"] = "base's"
    else:
        metrics.update(_chat_metrics(out_dir, chat), chat_template="default" if s.chat_template is None else "custom")
    return names, metrics


def _train(s: BuildSettings, texts, out_dir: Path, template: str) -> tuple[list[str], dict]:
    stats = train_sentencepiece(
        texts, out_dir / "tokenizer.model", model_type=s.model_type, vocab_size=s.vocab_size,
        character_coverage=s.character_coverage, input_sentence_size=s.input_sentence_size,
        max_sentence_length=s.max_sentence_length, split_digits=s.split_digits, num_threads=s.num_threads,
        seed=s.seed, user_defined_symbols=s.user_defined_symbols, morpheme_aware=s.morpheme_aware)
    export(out_dir / "tokenizer.model", s.model_type, out_dir, template, tuple(s.user_defined_symbols))

    sp, fast = E.load(out_dir)
    probes = E.check_probes(sp, fast)
    if probes.roundtrip_failures or probes.mismatches:
        raise TokenizerCheckError(
            f"{out_dir}: tokenizer is not lossless or tokenizer.json disagrees with tokenizer.model on probe strings: "
            f"round-trip failures {probes.roundtrip_failures}, id mismatches {probes.mismatches}")
    return list(FILES), {
        "vocab_size": sp.get_piece_size(),
        "model_type": s.model_type,
        "morpheme_aware": s.morpheme_aware,
        "training_sentences": stats.sentences_used,
        "training_sentences_fed": stats.sentences_fed,
        "training_chars": stats.chars_fed,
        "train_seconds": stats.train_seconds,
    }


def _extend(s: BuildSettings, texts, out_dir: Path, template: str) -> tuple[list[str], dict]:
    from data_prep.tokenizer.extend import extend_tokenizer

    for stale in FILES:  # files of an earlier trained run would contradict the extended tokenizer.json
        (out_dir / stale).unlink(missing_ok=True)
    if s.sample_chars > EXTEND_SAMPLE_WARN:
        log.warning("tokenizer.extend_from learns in Python from a sample held in memory (~10 s per MB): "
                    "tokenizer.sample_chars=%d may take long; %d is plenty for Korean pieces",
                    s.sample_chars, EXTEND_SAMPLE_WARN)
    metrics = extend_tokenizer(Path(s.extend_from), texts, out_dir, target_vocab_size=s.vocab_size, seed=s.seed)
    if not metrics["target_reached"]:
        log.warning("tokenizer: extended to %d of tokenizer.vocab_size=%d (%s)", metrics["vocab_size"],
                    s.vocab_size, metrics["stop_reason"])
    metrics["model_type"] = f"extended {metrics['kind']}"
    return list(EXTENDED_FILES), metrics


# What a Hugging Face tokenizer folder may hold; mode base copies those the base has.
BASE_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                        "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json")


def _keep(s: BuildSettings, texts, out_dir: Path) -> tuple[list[str], dict]:
    """Mode base: the base model's tokenizer as it is (every id kept), scored like a trained one."""
    for _ in texts:  # draw the sample anyway: the held-out documents the report scores come from it
        pass
    for stale in FILES + EXTENDED_FILES:
        (out_dir / stale).unlink(missing_ok=True)
    names = []
    for name in BASE_TOKENIZER_FILES:
        if (Path(s.extend_from) / name).is_file():
            shutil.copyfile(Path(s.extend_from) / name, out_dir / name)
            names.append(name)
    fast = RPT.load_tokenizer_json(s.extend_from)
    return names, {"vocab_size": fast.get_vocab_size(with_added_tokens=True), "model_type": "base"}


def _chat_metrics(out_dir: Path, chat: dict) -> dict:
    from tokenizers import Tokenizer

    fast = Tokenizer.from_file(str(out_dir / "tokenizer.json"))
    prompt_ids = fast.encode(chat["prompt"], add_special_tokens=False).ids
    full_ids = fast.encode(chat["rendered"], add_special_tokens=False).ids
    return {"chat_template_has_generation": chat["has_generation"],
            "chat_prompt_tokens_are_prefix": full_ids[:len(prompt_ids)] == prompt_ids}
