"""Tiny local "foundation model" folders shaped like the real ones, for tests of the routes that start from one.

    llama_sentencepiece(dest)  Llama-2: sentencepiece BPE (tokenizer.model, and tokenizer.json converted by
                               transformers' LlamaTokenizer), <unk>=0 <s>=1 </s>=2, no pad, byte fallback, no chat
                               template; LlamaConfig
    qwen2_byte_level(dest)     Qwen2: byte-level BPE, no bos, eos = pad = <|endoftext|> right after the learned
                               pieces (as 151643), <|im_start|> <|im_end|>, a ChatML chat template; Qwen2Config
    gpt_neox(dest)             Polyglot-ko (GPT-NeoX): byte-level BPE, bos = eos = <|endoftext|> at id 0, no pad;
                               GPTNeoXConfig

Each writes config.json, generation_config.json and model.safetensors (random weights, seed 0; weights=False: the
tokenizer and config.json only) and the tokenizer files into dest, and returns dest. The tokenizers are trained
here on the repo's own text (Korean bills and the Constitution in examples/data/ko-gov-sample, the English of
docs/*.md), a few hundred to ~1000 pieces, in well under a second; the model is hidden 32, 2 layers, 4 heads.
`cached(builder, root)` builds a folder once under root and reuses it (session fixtures share one root).
Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from tests.helpers import REPO_ROOT

SEED = 0
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=512)
# Qwen2's pre-tokenizer split (single digits), as in its tokenizer.json
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
# Qwen2.5's own chat template, as TRL ships it (TRL recognises it and adds the {% generation %} markers that loss on
# the answers needs, as it would for the real model)
CHATML = (Path(importlib.util.find_spec("trl").submodule_search_locations[0]) / "chat_templates" /
          "qwen2_5.jinja").read_text(encoding="utf-8")
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
POLYGLOT_PII = ("<|acc|>", "<|tel|>", "<|rrn|>")  # Polyglot-ko's tokens 30000-30002 (account, phone, RRN masks)


def texts() -> list[str]:
    """Korean (bills, the Constitution) and English (the docs) shipped in the repo, one string per file."""
    ko = sorted((REPO_ROOT / "examples" / "data" / "ko-gov-sample").glob("*.txt"))
    en = sorted((REPO_ROOT / "docs").glob("*.md"))
    return [p.read_text(encoding="utf-8") for p in ko + en]


def _added(token: str) -> dict:
    return {"content": token, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _save_model(dest: Path, config) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(dest)  # transformers 5 always writes safetensors (safe_serialization is gone)


def _rows(tokens: int, multiple: int) -> int:
    return -(-tokens // multiple) * multiple


def _model(dest: Path, config, weights: bool) -> Path:
    if weights:
        _save_model(dest, config)
    else:
        config.save_pretrained(dest)
    return dest


def _byte_level_bpe(vocab_size: int, split: str | None, special_tokens: list[str]):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    if split is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(texts(), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def llama_sentencepiece(dest: Path, weights: bool = True, vocab_size: int = 1000) -> Path:
    """Llama-2 shaped. The sentencepiece model is trained with Llama-2's settings (BPE, byte fallback, split digits,
    dummy prefix, identity normalisation, unk/bos/eos 0/1/2, no pad); tokenizer.json is what transformers' own
    conversion (LlamaTokenizer from tokenizer.model) writes; tokenizer_config.json is Llama-2-7b-hf's."""
    import sentencepiece as spm
    from transformers import LlamaConfig, LlamaTokenizer

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    lines = [ln for t in texts() for ln in t.splitlines() if ln.strip()]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=vocab_size,
        character_coverage=0.9995, byte_fallback=True, split_digits=True, add_dummy_prefix=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    (dest / "tokenizer.model").write_bytes(buf.getvalue())
    tok = LlamaTokenizer.from_pretrained(dest, add_bos_token=True, add_eos_token=False)
    tok.save_pretrained(dest)  # tokenizer.json; the config it writes is replaced by Llama-2's below
    for junk in ("special_tokens_map.json", "chat_template.jinja"):
        (dest / junk).unlink(missing_ok=True)
    _write_json(dest / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": {"__type": "AddedToken", **_added("<s>")},
        "clean_up_tokenization_spaces": False, "eos_token": {"__type": "AddedToken", **_added("</s>")},
        "legacy": False, "model_max_length": 1000000000000000019884624838656, "pad_token": None,
        "padding_side": "right", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
        "unk_token": {"__type": "AddedToken", **_added("<unk>")}})
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=1, eos_token_id=2, pad_token_id=None,
                         tie_word_embeddings=False, **TINY)
    return _model(dest, config, weights)


def qwen2_byte_level(dest: Path, weights: bool = True, vocab_size: int = 1000, rows_multiple: int = 1) -> Path:
    """Qwen2 shaped: NFC, Qwen2's split regex then ByteLevel, BPE; <|endoftext|> <|im_start|> <|im_end|> added
    after the learned pieces; tokenizer_config.json as Qwen2-0.5B's (bos null, eos = pad = <|endoftext|>, a
    ChatML template, Qwen2Tokenizer); config.json bos/eos 151643-style (both the <|endoftext|> id).
    rows_multiple=128: embedding rows padded past the tokenizer as the real ones are (151,936 rows, 151,646 tokens)."""
    from tokenizers import AddedToken
    from transformers import Qwen2Config

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tok = _byte_level_bpe(vocab_size, QWEN2_SPLIT, [])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (ENDOFTEXT, IM_START, IM_END)])
    tok.save(str(dest / "tokenizer.json"))
    eot = tok.token_to_id(ENDOFTEXT)
    _write_json(dest / "tokenizer_config.json", {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(tok.token_to_id(t)): _added(t) for t in (ENDOFTEXT, IM_START, IM_END)},
        "additional_special_tokens": [IM_START, IM_END], "bos_token": None, "chat_template": CHATML,
        "clean_up_tokenization_spaces": False, "eos_token": ENDOFTEXT, "errors": "replace",
        "model_max_length": 32768, "pad_token": ENDOFTEXT, "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer", "unk_token": None})
    config = Qwen2Config(vocab_size=_rows(tok.get_vocab_size(), rows_multiple), bos_token_id=eot, eos_token_id=eot,
                         num_key_value_heads=2, tie_word_embeddings=True, **TINY)
    return _model(dest, config, weights)


def gpt_neox(dest: Path, weights: bool = True, vocab_size: int = 1000, rows_multiple: int = 1) -> Path:
    """Polyglot-ko shaped GPT-NeoX: byte-level BPE with <|endoftext|> at id 0 and the PII masks after the learned
    pieces (Polyglot-ko: 30,000 + 3 = 30,003 tokens), no pad.

    Special tokens: Polyglot-ko's published files could not be read here (offline). EleutherAI's polyglot repository
    (tokenizer/MBBPE) names eos "<|endoftext|>" with tokenizer_class PreTrainedTokenizerFast; GPT-NeoX-20B's folder,
    which Polyglot-ko follows, names bos = eos = unk = "<|endoftext|>" and no pad, and its config.json has
    bos_token_id = eos_token_id = 0. Mirrored as: tokenizer_config.json with the class only, the tokens in
    special_tokens_map.json (the older layout, which transformers still reads), config.json bos = eos = 0.
    rows_multiple=128: embedding rows padded past the tokenizer as Polyglot-ko's (30,080 rows, 30,003 tokens)."""
    from tokenizers import AddedToken
    from transformers import GPTNeoXConfig

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tok = _byte_level_bpe(vocab_size, None, [ENDOFTEXT])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in POLYGLOT_PII])
    tok.save(str(dest / "tokenizer.json"))
    _write_json(dest / "tokenizer_config.json", {"model_max_length": 1000000000000000019884624838656,
                                                 "tokenizer_class": "PreTrainedTokenizerFast"})
    _write_json(dest / "special_tokens_map.json", {"bos_token": ENDOFTEXT, "eos_token": ENDOFTEXT,
                                                   "unk_token": ENDOFTEXT})
    config = GPTNeoXConfig(vocab_size=_rows(tok.get_vocab_size(), rows_multiple), bos_token_id=0, eos_token_id=0, rotary_pct=0.5,
                           use_parallel_residual=True, tie_word_embeddings=False, **TINY)
    return _model(dest, config, weights)


BUILDERS: dict[str, Callable[..., Path]] = {
    "llama": llama_sentencepiece, "qwen2": qwen2_byte_level, "gpt_neox": gpt_neox}


def cached(builder: Callable[..., Path], root: Path, weights: bool = True) -> Path:
    """builder's folder under root, built on first use (into a temporary name, then renamed: a folder that exists
    is complete). Session fixtures of several test modules may share one root."""
    dest = Path(root) / (builder.__name__ + ("" if weights else "-tokenizer"))
    if dest.is_dir():
        return dest
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    builder(tmp, weights=weights)
    try:
        tmp.rename(dest)
    except OSError:  # built meanwhile by another process
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
