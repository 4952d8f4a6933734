"""The project's fixed special tokens and their ids.

Ids 0-3 are sentencepiece's own meta pieces (unk/bos/eos/pad, set by id at training).
The role markers follow as sentencepiece *user-defined* pieces: matched whole in raw
text before BPE, so they are never split and never merged into neighbours. In the
transformers tokenizer they are special added tokens (skipped by
`decode(..., skip_special_tokens=True)`). The recipe's tokenizer.user_defined_symbols
come next (plain added tokens), then byte pieces <0x00>..<0xFF>, then learned pieces.
Newlines and tabs are ordinary characters that merge into pieces ("다.\n"): as atoms
they cost a token each, ~12% of the tokens of line-rich text (scripts/bench_tokenizer.py).
"""

from __future__ import annotations

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3

ROLE_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>")  # ids 4, 5, 6

META = (UNK, BOS, EOS, PAD)
SPECIAL_TOKENS = META + ROLE_MARKERS  # special in transformers
USER_DEFINED = ROLE_MARKERS  # user_defined_symbols, in id order


def expected_ids() -> dict[str, int]:
    return {tok: i for i, tok in enumerate(META + USER_DEFINED)}


def user_defined(extra=()) -> tuple[str, ...]:
    """The project's user-defined pieces, then the recipe's tokenizer.user_defined_symbols (ids 7, 8, ...)."""
    extra = tuple(extra)
    bad = [t for t in extra if not isinstance(t, str) or not t or t in META + USER_DEFINED]
    if bad or len(set(extra)) != len(extra):
        raise ValueError(f"tokenizer.user_defined_symbols: non-empty, distinct strings other than the project's "
                         f"{list(META + USER_DEFINED)}; got {list(extra)}")
    return USER_DEFINED + extra
