"""The bos/eos/pad/unk tokens of a Hugging Face tokenizer folder and their ids, read without transformers.

Resolved the way transformers 5 does for `AutoTokenizer.from_pretrained(folder)`:
  1. tokenizer_config.json's bos_token/eos_token/pad_token/unk_token: a string, an AddedToken dict
     ({"content": ...}) or null (explicitly none);
  2. special_tokens_map.json overrides them when the config has no "added_tokens_decoder" (older folders);
  3. a key named nowhere takes the default of the config's tokenizer_class (LlamaTokenizer: <s> </s> <unk>;
     Qwen2Tokenizer: no bos, <|endoftext|>; GPT-2/GPT-NeoX: <|endoftext|>); a class default the vocabulary
     lacks counts as none (transformers would add it as a new id past the model's rows, e.g. GPT-NeoX's
     <|padding|>: then pretraining's check of the shards against the tokenizer refuses);
  4. the id is the token's in tokenizer.json (added tokens, then the model vocabulary).
A token the folder names explicitly but tokenizer.json lacks is an error (transformers would add it as a
new id, which no model has a row for).

Examples: the project's own tokenizer <s>=1 </s>=2 <pad>=3; Llama-2 <s>=1 </s>=2, no pad; Llama-3
<|begin_of_text|>=128000 <|end_of_text|>=128001, no pad; Qwen2 no bos, eos = pad = <|endoftext|>=151643.

Documents in the shards are `bos text eos` (doc_prefix() + text + [eos]) when the tokenizer has a bos other
than its eos, else `text eos`: Qwen2 has no bos, and with bos = eos (GPT-NeoX, Polyglot-ko) the previous
document's eos already marks the start, as those models were trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

KEYS = ("bos", "eos", "pad", "unk")

# transformers 5's class defaults (models/*/tokenization_*.py), for keys a folder does not name.
_CLASS_DEFAULTS: dict[str, dict[str, str | None]] = {
    "LlamaTokenizer": {"bos": "<s>", "eos": "</s>", "unk": "<unk>", "pad": None},
    "Qwen2Tokenizer": {"bos": None, "eos": "<|endoftext|>", "unk": "<|endoftext|>", "pad": "<|endoftext|>"},
    "GPT2Tokenizer": {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>", "pad": None},
    "GPTNeoXTokenizer": {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>",
                         "pad": "<|padding|>"},
}


class SpecialTokensError(ValueError):
    pass


@dataclass(frozen=True)
class SpecialTokens:
    """Each of bos/eos/pad/unk as (token, id), or None when the tokenizer has none."""

    bos: tuple[str, int] | None
    eos: tuple[str, int] | None
    pad: tuple[str, int] | None
    unk: tuple[str, int] | None

    def id(self, key: str) -> int | None:
        tok = getattr(self, key)
        return None if tok is None else tok[1]

    @property
    def bos_id(self) -> int | None:
        return self.id("bos")

    @property
    def eos_id(self) -> int | None:
        return self.id("eos")

    @property
    def pad_id(self) -> int | None:
        return self.id("pad")

    def doc_prefix(self) -> list[int]:
        """What starts each document in the shards: [bos], or nothing (no bos, or bos = eos)."""
        return [self.bos[1]] if self.bos is not None and self.bos_id != self.eos_id else []

    def layout(self) -> str:
        """The document layout with the real token strings, e.g. "<s> text </s>" or "text <|endoftext|>"."""
        if self.eos is None:
            raise SpecialTokensError("the tokenizer has no eos token")
        head = [self.bos[0]] if self.doc_prefix() else []
        return " ".join(head + ["text", self.eos[0]])

    def as_config(self) -> dict[str, str | None]:
        """tokenizer_config.json entries that name these tokens explicitly ({"bos_token": "<s>", ...})."""
        return {f"{k}_token": (None if getattr(self, k) is None else getattr(self, k)[0]) for k in KEYS}


def _content(value) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    if value is not None and not isinstance(value, str):
        raise TypeError(value)
    return value or None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SpecialTokensError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise SpecialTokensError(f"{path}: not a JSON object")
    return data


def token_ids(tokenizer_json: dict) -> dict[str, int]:
    """Every token of a tokenizer.json with its id: the model vocabulary, then the added tokens (they win)."""
    vocab = (tokenizer_json.get("model") or {}).get("vocab") or {}
    ids = dict(vocab) if isinstance(vocab, dict) else {v[0]: i for i, v in enumerate(vocab)}  # Unigram: [piece, score]
    ids.update({t["content"]: t["id"] for t in tokenizer_json.get("added_tokens") or []})
    return ids


def read_special_tokens(folder: Path, tokenizer_json: dict | None = None) -> SpecialTokens:
    """The folder's bos/eos/pad/unk (see the module docstring); tokenizer_json: tokenizer.json already parsed."""
    folder = Path(folder)
    if tokenizer_json is None:
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise SpecialTokensError(f"{path}: missing; a Hugging Face tokenizer folder has a tokenizer.json")
        tokenizer_json = _read_json(path)
    config = _read_json(folder / "tokenizer_config.json")
    named: dict[str, tuple[object, str]] = {}  # key -> (value, where it came from)
    for k in KEYS:
        if f"{k}_token" in config:
            named[k] = (config[f"{k}_token"], "tokenizer_config.json")
    if "added_tokens_decoder" not in config:  # transformers reads special_tokens_map.json only then
        smap = _read_json(folder / "special_tokens_map.json")
        for k in KEYS:
            if f"{k}_token" in smap:
                named[k] = (smap[f"{k}_token"], "special_tokens_map.json")
    cls = str(config.get("tokenizer_class") or "").removesuffix("Fast")
    defaults = _CLASS_DEFAULTS.get(cls, {})
    ids = token_ids(tokenizer_json)
    out: dict[str, tuple[str, int] | None] = {}
    for k in KEYS:
        if k in named:
            value, where = named[k]
            try:
                token = _content(value)
            except TypeError:
                raise SpecialTokensError(f"{folder / where}: key '{k}_token' must be a string, an AddedToken "
                                         f"object or null, got {value!r}") from None
            if token is not None and token not in ids:
                raise SpecialTokensError(f"{folder / where}: key '{k}_token' is {token!r}, which "
                                         f"{folder / 'tokenizer.json'} does not have")
        else:
            token = defaults.get(k)
            token = token if token in ids else None
        out[k] = None if token is None else (token, int(ids[token]))
    return SpecialTokens(**out)
