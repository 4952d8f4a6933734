"""Export a sentencepiece model as a transformers fast tokenizer (tokenizer.json +
tokenizer_config.json), built with the `tokenizers` library directly (transformers'
AutoTokenizer imports torch; data nodes never do).

The fast tokenizer reproduces sentencepiece's ids exactly for text that contains no
literal "<s>", "</s>", "<unk>" or "<pad>" (sentencepiece reads those as plain text, the fast
tokenizer as special tokens, which the chat template relies on):
  - normalizer: " " -> "▁" only (sentencepiece's identity rule + whitespace escaping)
  - no pre-tokenizer: sentencepiece's BPE runs over the whole text, not word by word
  - BPE: sentencepiece merges any adjacent pair whose concatenation is a piece, best score
    first; so every split of every piece into two pieces is a merge, ranked by the score of
    the piece it makes (equal-score ties are broken by position in sentencepiece, by list
    order here; they can differ only for overlapping splits like "ab"+"a" / "a"+"ba")
  - unigram: the same pieces and scores; byte/meta pieces get a score that Viterbi never picks.
    Exact but for Viterbi ties (two segmentations with the same total score, e.g. runs of
    dashes split 15+13 or 13+15): 2 of 4,248 documents in a test; BPE had none
  - user-defined pieces as added tokens (matched whole before the model, as sentencepiece does)
  - byte_fallback, and a decoder that maps "▁" back to " " and fuses byte pieces into UTF-8

transformers 5 rebuilds LlamaTokenizer from vocab/merges with its own Metaspace pre-tokenizer
(a dummy prefix space): tokenizer_class must be TokenizersBackend so tokenizer.json is used as is.
"""

from __future__ import annotations

import json
from pathlib import Path

import sentencepiece as spm
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

from data_prep.tokenizer import specials as S

SPACE = "\u2581"
_NEVER = -1e9  # unigram score for pieces that must not come out of the lattice from plain text


def _pieces(sp: spm.SentencePieceProcessor, frozen: set[str]) -> list[tuple[str, float, bool]]:
    """(piece, score, is_normal) by id; normal = learned or single-character pieces, not user-defined."""
    out = []
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        normal = not (sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i) or p in frozen)
        out.append((p, sp.get_score(i), normal))
    return out


def bpe_merges(pieces: list[tuple[str, float, bool]]) -> list[tuple[str, str]]:
    normal = {p: i for i, (p, _, ok) in enumerate(pieces) if ok}
    ranked = []
    for p, i in normal.items():
        for k in range(1, len(p)):
            left, right = p[:k], p[k:]
            if left in normal and right in normal:
                ranked.append((-pieces[i][1], i, k, (left, right)))
    ranked.sort()
    return [m[3] for m in ranked]


def build_fast_tokenizer(model_file: Path, model_type: str, extra_symbols: tuple[str, ...] = ()) -> Tokenizer:
    """model_type: what the model was trained as (bpe | unigram; not readable without protobuf);
    extra_symbols: the recipe's user-defined pieces the model was trained with."""
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    pieces = _pieces(sp, set(S.user_defined(extra_symbols)))
    if model_type == "bpe":
        vocab = {p: i for i, (p, _, _) in enumerate(pieces)}
        model = models.BPE(vocab=vocab, merges=bpe_merges(pieces), unk_token=S.UNK,
                           byte_fallback=True, fuse_unk=True)
    elif model_type == "unigram":
        vocab = [(p, score if ok else _NEVER) for p, score, ok in pieces]
        model = models.Unigram(vocab, unk_id=S.UNK_ID, byte_fallback=True)
    else:
        raise ValueError(f"tokenizer.model_type: bpe or unigram, got '{model_type}'")
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Replace(" ", SPACE)
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()])
    # Added tokens are matched on the raw text (normalized=False) and keep their spm ids.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in S.SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra_symbols])
    # add_special_tokens=True prepends <s> (as every pretraining document starts); no eos.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{S.BOS} $A", pair=f"{S.BOS} $A {S.BOS} $B", special_tokens=[(S.BOS, S.BOS_ID)])
    for t, want in S.expected_ids().items():
        if tok.token_to_id(t) != want:
            raise ValueError(f"{model_file}: token {t!r} got id {tok.token_to_id(t)} in tokenizer.json, expected {want}")
    if tok.get_vocab_size(with_added_tokens=True) != sp.get_piece_size():
        raise ValueError(f"{model_file}: tokenizer.json has {tok.get_vocab_size(True)} ids, sentencepiece {sp.get_piece_size()}")
    return tok


def tokenizer_config(chat_template: str) -> dict:
    return {
        "tokenizer_class": "TokenizersBackend",  # not LlamaTokenizer: see the module docstring
        "bos_token": S.BOS, "eos_token": S.EOS, "unk_token": S.UNK, "pad_token": S.PAD,
        "extra_special_tokens": list(S.ROLE_MARKERS),
        "add_bos_token": True, "add_eos_token": False,
        "clean_up_tokenization_spaces": False,  # would eat spaces before punctuation: not lossless
        "padding_side": "right",
        "chat_template": chat_template,
    }


def export(model_file: Path, model_type: str, out_dir: Path, chat_template: str,
           extra_symbols: tuple[str, ...] = ()) -> list[str]:
    """Write tokenizer.json and tokenizer_config.json into out_dir; returns the file names."""
    out_dir = Path(out_dir)
    build_fast_tokenizer(model_file, model_type, extra_symbols).save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config(chat_template), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return ["tokenizer.json", "tokenizer_config.json"]
