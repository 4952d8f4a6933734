"""Tokenizer folder from the clean corpus: train, export, check. Used by kgov_train.stages.tokenizer.

<out_dir>/tokenizer.model        sentencepiece model (the reference)
<out_dir>/tokenizer.json         the same tokenizer for `tokenizers` / transformers
<out_dir>/tokenizer_config.json  special tokens, chat template; AutoTokenizer.from_pretrained(out_dir)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

from data_prep.tokenizer import chat_template as CT
from data_prep.tokenizer import evaluate as E
from data_prep.tokenizer.corpus import clean_files, iter_documents
from data_prep.tokenizer.export import export
from data_prep.tokenizer.train import train_sentencepiece

log = logging.getLogger("kgov_train")

FILES = ["tokenizer.model", "tokenizer.json", "tokenizer_config.json"]
EVAL_CHARS = 5_000_000  # compression and round-trip are measured on the first documents up to this size


class TokenizerCheckError(RuntimeError):
    pass


def build_tokenizer(clean_dir: Path, out_dir: Path, *, model_type: str, vocab_size: int, character_coverage: float,
                    input_sentence_size: int, max_sentence_length: int, split_digits: bool, num_threads: int,
                    seed: int, chat_template: str | None = None) -> dict:
    """Train on every document of clean_dir, write FILES into out_dir, return metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    template = chat_template or CT.DEFAULT_CHAT_TEMPLATE
    chat = CT.check(template)  # a broken template fails here, before training
    if not chat["has_generation"]:
        log.warning("tokenizer.chat_template has no %s block: sft.assistant_only_loss=true will fail", "{% generation %}")

    files = clean_files(clean_dir)
    sample: list[tuple[str, str]] = []

    def texts() -> Iterator[str]:
        budget = EVAL_CHARS
        for doc_id, text in iter_documents(files):
            if budget > 0:
                sample.append((doc_id, text))
                budget -= len(text)
            yield text

    stats = train_sentencepiece(
        texts(), out_dir / "tokenizer.model", model_type=model_type, vocab_size=vocab_size,
        character_coverage=character_coverage, input_sentence_size=input_sentence_size,
        max_sentence_length=max_sentence_length, split_digits=split_digits, num_threads=num_threads, seed=seed)
    export(out_dir / "tokenizer.model", model_type, out_dir, template)

    sp, fast = E.load(out_dir)
    probes = E.check_probes(sp, fast)
    if probes.roundtrip_failures or probes.mismatches:
        raise TokenizerCheckError(
            f"{out_dir}: tokenizer is not lossless or tokenizer.json disagrees with tokenizer.model on probe strings: "
            f"round-trip failures {probes.roundtrip_failures}, id mismatches {probes.mismatches}")
    corpus = E.compare(sp, fast, sample)
    if corpus.roundtrip_failures:
        log.warning("tokenizer: %d of %d sample documents do not round-trip (first: %s); U+2581 '▁' in the text "
                    "is the known cause", len(corpus.roundtrip_failures), corpus.documents, corpus.roundtrip_failures[0])
    if corpus.mismatches:
        log.warning("tokenizer: tokenizer.json and tokenizer.model give different ids on %d of %d sample documents "
                    "(first: %s)", len(corpus.mismatches), corpus.documents, corpus.mismatches[0])
    prompt_ids = fast.encode(chat["prompt"], add_special_tokens=False).ids
    full_ids = fast.encode(chat["rendered"], add_special_tokens=False).ids
    return {
        "vocab_size": sp.get_piece_size(),
        "model_type": model_type,
        "training_sentences": stats.sentences_used,
        "training_sentences_fed": stats.sentences_fed,
        "training_chars": stats.chars_fed,
        "train_seconds": stats.train_seconds,
        **corpus.metrics(),
        "roundtrip_ok": not corpus.roundtrip_failures,
        "fast_matches_spm": not corpus.mismatches,
        "chat_template": "default" if chat_template is None else "custom",
        "chat_template_has_generation": chat["has_generation"],
        "chat_prompt_tokens_are_prefix": full_ids[:len(prompt_ids)] == prompt_ids,
    }
