"""The project's fixed special tokens and their ids.

Ids 0-3 are sentencepiece's own meta pieces (unk/bos/eos/pad, set by id at training).
The role markers and the whitespace symbols follow as sentencepiece *user-defined*
pieces: matched whole in raw text before BPE, so they are never split and never
merged into neighbours. In the transformers tokenizer the markers are special added
tokens (skipped by `decode(..., skip_special_tokens=True)`), the whitespace symbols
plain added tokens. Byte pieces <0x00>..<0xFF> come right after, then learned pieces.
"""

from __future__ import annotations

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3

ROLE_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>")  # ids 4, 5, 6
# Training input has one line per sentence, so "\n" never occurs there; as a user-defined
# piece every newline is one token (and a hard boundary) instead of a byte-fallback byte.
WHITESPACE_SYMBOLS = ("\n", "\t")  # ids 7, 8

META = (UNK, BOS, EOS, PAD)
SPECIAL_TOKENS = META + ROLE_MARKERS  # special in transformers
USER_DEFINED = ROLE_MARKERS + WHITESPACE_SYMBOLS  # user_defined_symbols, in id order


def expected_ids() -> dict[str, int]:
    return {tok: i for i, tok in enumerate(META + USER_DEFINED)}


def user_defined(extra=()) -> tuple[str, ...]:
    """The project's user-defined pieces, then the recipe's tokenizer.user_defined_symbols (ids 9, 10, ...)."""
    extra = tuple(extra)
    bad = [t for t in extra if not isinstance(t, str) or not t or t in META + USER_DEFINED]
    if bad or len(set(extra)) != len(extra):
        raise ValueError(f"tokenizer.user_defined_symbols: non-empty, distinct strings other than the project's "
                         f"{list(META + USER_DEFINED)}; got {list(extra)}")
    return USER_DEFINED + extra
