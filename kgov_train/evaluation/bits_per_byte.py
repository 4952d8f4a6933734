"""Bits per byte: a language-modelling figure that does not depend on the tokenizer.

    bits per byte = (sum over the scored texts of -log2 p(token | preceding tokens)) / (UTF-8 bytes of those texts)

Each model reads the same raw text through its OWN tokenizer, so a base model and its continued-pretraining
descendant with an extended vocabulary are comparable (perplexity per token is not: more text per token means
fewer, harder predictions). The denominator is len(text.encode("utf-8")) of the raw text, whatever the tokenizer's
normaliser (NFC, a sentencepiece dummy prefix) does to it.

Each document is scored on its own:
  - its text is tokenised without special tokens, and the model's bos token is put in front when the tokenizer has
    one (else its eos, as lm-evaluation-harness does; with neither, the first text token is context only and goes
    unscored while its bytes still count), so every token of the text is predicted from the document's start;
  - the sequence [bos] + tokens is cut into windows of `window` tokens (eval.seq_len, or pretrain.seq_len, and at
    most the model's max_position_embeddings) that overlap by exactly one token: window k is
    seq[k*(window-1) : k*(window-1) + window], its first token is context only, and each following token is
    predicted from the tokens before it IN THAT WINDOW. So a document longer than one window is scored in
    consecutive, independent windows: every text token is predicted exactly once, but a token at the start of a
    later window sees only the one token before it, not the rest of the document (no sliding context, no state
    carried over). That makes long documents look somewhat harder than they would with a sliding window; the
    figure is still exact for what it measures and identical across runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kgov_train.evaluation.perplexity import score_windows

LN2 = math.log(2)


def prefix_id(tokenizer) -> int | None:
    """The token put in front of each document: bos, else eos, else None."""
    for tid in (getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if tid is not None:
            return int(tid)
    return None


def window_length(model, seq_len: int) -> int:
    """seq_len, at most the model's max_position_embeddings (when the config has one); at least 2."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return max(2, min(int(seq_len), int(limit)) if isinstance(limit, int) and limit > 0 else int(seq_len))


def token_windows(ids: list[int], window: int) -> list[np.ndarray]:
    """Windows of at most `window` tokens overlapping by one: every token but the first is predicted exactly once."""
    if window < 2:
        raise ValueError(f"a window needs at least 2 tokens, got {window}")
    seq = np.asarray(ids, dtype=np.int64)
    step = window - 1
    return [seq[i:i + window] for i in range(0, max(len(seq) - 1, 0), step)]


def document_windows(tokenizer, text: str, window: int) -> tuple[list[np.ndarray], int]:
    """(windows of one document, its UTF-8 bytes)."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    first = prefix_id(tokenizer)
    return token_windows(([first] if first is not None else []) + list(ids), window), len(text.encode("utf-8"))


def score(model, tokenizer, documents: list[str], window: int, batch_size: int, pad_id: int = 0) -> dict[str, Any]:
    """{"bits_per_byte", "bits", "bytes", "tokens" (predicted), "documents", "windows"} over the documents."""
    windows: list[np.ndarray] = []
    n_bytes = 0
    for text in documents:
        w, b = document_windows(tokenizer, text, window)
        windows += w
        n_bytes += b
    nll, tokens = score_windows(model, windows, batch_size, pad_id) if windows else (0.0, 0)
    bits = nll / LN2
    return {"bits_per_byte": round(bits / n_bytes, 6) if n_bytes else None, "bits": round(bits, 3),
            "bytes": n_bytes, "tokens": tokens, "documents": len(documents), "windows": len(windows)}


def bits_per_byte(model, tokenizer, sets: dict[str, list[str]], window: int, batch_size: int,
                  pad_id: int = 0) -> dict[str, dict[str, Any]]:
    """{set name: score(...)} for every set of documents."""
    return {name: score(model, tokenizer, docs, window, batch_size, pad_id) for name, docs in sets.items()}
