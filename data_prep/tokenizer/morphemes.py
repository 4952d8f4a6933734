"""Morpheme-aware training text (the Polyglot-ko approach): pieces never straddle a morpheme boundary.

kiwipiepy analyses each training sentence; a DELIMITER goes in at every morpheme start
inside a word, and sentencepiece's `pretokenization_delimiter` treats it as a boundary
that no piece may cross and removes it. Only the training sample is segmented: encoding
needs no analyser, and the text itself is unchanged, so the tokenizer stays lossless.
The cost (measured in scripts/bench_tokenizer.py): pieces are shorter, so fewer
characters per token, and kiwipiepy's analysis adds to the training time.
"""

from __future__ import annotations

from typing import Iterable, Iterator

DELIMITER = "\ue000"  # private use: not in real text; stripped from the input first so it cannot collide
_BATCH = 2048


def _segment(text: str, tokens) -> str:
    cuts, end = [], 0
    for t in tokens:
        # kiwi's tokens carry character offsets into `text`; contracted forms (했다 = 하+였+다) overlap
        # and get no cut inside the overlap; cuts next to whitespace add nothing
        if t.start >= end and 0 < t.start < len(text) and not text[t.start - 1].isspace() \
                and not text[t.start].isspace():
            cuts.append(t.start)
        end = max(end, t.start + t.len)
    if not cuts:
        return text
    parts, prev = [], 0
    for c in cuts:
        parts.append(text[prev:c])
        prev = c
    parts.append(text[prev:])
    return DELIMITER.join(parts)


def segment(sentences: Iterable[str], num_workers: int = 2) -> Iterator[str]:
    """The sentences with DELIMITER at morpheme boundaries inside words, in order."""
    from kiwipiepy import Kiwi  # only this option needs it; loading the model takes a second

    kiwi = Kiwi(num_workers=max(num_workers, 1))
    batch: list[str] = []

    def flush():
        for text, tokens in zip(batch, kiwi.tokenize(batch)):
            yield _segment(text, tokens)

    for s in sentences:
        batch.append(s.replace(DELIMITER, ""))
        if len(batch) >= _BATCH:
            yield from flush()
            batch = []
    if batch:
        yield from flush()
