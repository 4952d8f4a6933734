"""Train a lossless sentencepiece model (BPE or unigram) on a stream of documents.

Lossless means decode(encode(x)) == x for any text (except U+2581 '▁', which
sentencepiece uses for the space). That takes, beyond the defaults:
  - normalization_rule_name=identity: no NFKC (it folds full-width forms, compatibility Hanja...)
  - add_dummy_prefix=False: no space invented at the start
  - remove_extra_whitespaces=False: leading, trailing and repeated spaces kept
  - allow_whitespace_only_pieces=True: runs of spaces (indentation in laws and bills) become pieces
  - byte_fallback=True: characters outside the vocabulary become UTF-8 byte pieces, never <unk>
and, for characters per token:
  - training "sentences" are whole documents (cut at a newline when longer than
    max_sentence_length), so newlines merge into pieces ("다.\n") instead of costing a token each
  - split_by_unicode_script=False: Hangul and punctuation merge ("다.", "「", "」에")
Together they take our lossless tokenizer past sentencepiece's lossy defaults in characters per
token, even with split_digits (scripts/bench_tokenizer.py).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import sentencepiece as spm

from data_prep.tokenizer import morphemes
from data_prep.tokenizer import specials as S


class TokenizerTrainError(RuntimeError):
    pass


@dataclass
class TrainStats:
    sentences_fed: int  # "sentences" given to sentencepiece: documents, long ones cut
    sentences_used: int  # after sentencepiece's sampling down to input_sentence_size
    chars_fed: int
    train_seconds: float


def split_long(text: str, max_bytes: int) -> Iterator[str]:
    """Cut a text into pieces of at most max_bytes UTF-8 bytes, at a newline or else a space when one is near.

    sentencepiece silently skips longer sentences; cutting keeps their text in training.
    """
    if len(text.encode("utf-8")) <= max_bytes:
        yield text
        return
    while text:
        chunk = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore") or text[0]  # whole characters
        if len(chunk) < len(text):
            cut = chunk.rfind("\n", len(chunk) // 2) + 1 or chunk.rfind(" ", len(chunk) // 2)
            if cut > 0:
                chunk = chunk[:cut]  # a space starts the next piece, as sentencepiece expects (▁word)
        yield chunk
        text = text[len(chunk):]


def lines(texts: Iterable[str]) -> Iterator[str]:
    """Non-blank lines: how sentencepiece's own tools read a corpus (scripts/bench_tokenizer.py's baseline)."""
    for text in texts:
        for line in text.split("\n"):
            if line.strip():
                yield line


def sentences(texts: Iterable[str], max_bytes: int, morpheme_aware: bool = False, num_threads: int = 2) -> Iterator[str]:
    """Training "sentences": non-blank documents with their newlines, morpheme boundaries marked if asked,
    long ones cut."""
    out = (t for t in texts if t.strip())
    if morpheme_aware:
        out = morphemes.segment(out, num_threads)
    for text in out:
        yield from split_long(text, max_bytes)


class _Counter:
    """Counts what sentencepiece pulls from the iterator, and keeps an error raised while reading
    (sentencepiece would report it as its own INTERNAL error)."""

    def __init__(self, it: Iterable[str]):
        self.it, self.n, self.chars, self.error = iter(it), 0, 0, None

    def __iter__(self):
        try:
            for s in self.it:
                self.n += 1
                self.chars += len(s)
                yield s
        except Exception as e:
            self.error = e
            raise


def train_sentencepiece(texts: Iterable[str], model_path: Path, *, model_type: str, vocab_size: int,
                        character_coverage: float, input_sentence_size: int, max_sentence_length: int,
                        split_digits: bool, num_threads: int, seed: int, user_defined_symbols: Iterable[str] = (),
                        morpheme_aware: bool = False) -> TrainStats:
    """Train on `texts` (whole documents, streamed) and write the model to `model_path`."""
    if model_type not in ("bpe", "unigram"):
        raise TokenizerTrainError(f"tokenizer.model_type: bpe or unigram, got '{model_type}'")
    symbols = S.user_defined(user_defined_symbols)
    counter = _Counter(sentences(texts, max_sentence_length, morpheme_aware, num_threads))
    extra = {"pretokenization_delimiter": morphemes.DELIMITER} if morpheme_aware else {}
    buf = io.BytesIO()
    # Determinism: the same corpus and settings give the same model byte for byte. sentencepiece
    # 0.2.3 samples input_sentence_size lines with a fixed internal seed (any seed gives the same
    # model: checked); the seed is still set for versions that honour it. The model does depend
    # on num_threads (BPE tie-breaks), which is part of the tokenizer config and its fingerprint.
    spm.set_random_generator_seed(seed)
    t0 = time.time()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(counter), model_writer=buf,
            model_type=model_type, vocab_size=vocab_size, character_coverage=character_coverage,
            input_sentence_size=input_sentence_size, shuffle_input_sentence=True,
            max_sentence_length=max_sentence_length, split_digits=split_digits, num_threads=num_threads,
            byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=False,
            remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, split_by_unicode_script=False,
            unk_id=S.UNK_ID, bos_id=S.BOS_ID, eos_id=S.EOS_ID, pad_id=S.PAD_ID,
            unk_piece=S.UNK, bos_piece=S.BOS, eos_piece=S.EOS, pad_piece=S.PAD,
            user_defined_symbols=list(symbols), hard_vocab_limit=True,
            minloglevel=1, **extra,
        )
    except RuntimeError as e:
        if counter.error is not None:
            raise counter.error from None
        if counter.n == 0:
            raise TokenizerTrainError("no training text: every document is empty or whitespace") from None
        raise TokenizerTrainError(
            f"sentencepiece training failed with tokenizer.vocab_size={vocab_size}, "
            f"tokenizer.character_coverage={character_coverage} on {counter.n} sentences: {e}") from e
    seconds = time.time() - t0
    model_path = Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(buf.getvalue())
    _check_ids(model_path)
    used = min(counter.n, input_sentence_size) if input_sentence_size > 0 else counter.n  # 0: spm keeps all
    return TrainStats(counter.n, used, counter.chars, round(seconds, 3))


def _check_ids(model_path: Path) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    for piece, want in S.expected_ids().items():
        got = sp.piece_to_id(piece)
        if got != want or sp.id_to_piece(want) != piece:
            raise TokenizerTrainError(f"{model_path}: special piece {piece!r} has id {got}, expected {want}")
