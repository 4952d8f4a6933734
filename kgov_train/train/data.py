"""Training data: packed token windows over the shards, and chat/preference jsonl records.

Imported only inside training processes (it needs torch).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

log = logging.getLogger("kgov_train")

ROLES = ("system", "user", "assistant")


class TrainDataError(ValueError):
    """Training inputs that cannot be used (mismatched tokenizer, empty split, no valid record)."""


# ---------------------------------------------------------------------------------------------------------------------
# Pretraining: fixed-length windows over the concatenated token stream of a split
# ---------------------------------------------------------------------------------------------------------------------


def _shards_reader():
    from data_prep.shards import read  # written by the data_prep engineers; torch-free

    return read


def check_shards(shards_dir: Path, tokenizer_dir: Path, tokenizer) -> dict[str, Any]:
    """Refuse shards that were not encoded with this tokenizer; return their index."""
    read = _shards_reader()
    try:
        read.check_tokenizer(shards_dir, tokenizer_dir)
    except Exception as e:  # the reader's message names both files and says what to do
        raise TrainDataError(f"pretrain: tokenizer/shards mismatch: {e}") from None
    index = read.load_index(shards_dir)
    ours = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    wrong = {k: (index.get(k), v) for k, v in ours.items() if index.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k}: shards {a} vs tokenizer {b}" for k, (a, b) in wrong.items())
        raise TrainDataError(
            f"pretrain: the shards in {shards_dir} disagree with the tokenizer in {tokenizer_dir} ({detail}). "
            "Rerun the shards stage with this tokenizer (force=true)."
        )
    for split in ("train", "validation"):
        if split not in index.get("splits", {}):
            raise TrainDataError(f"pretrain: {shards_dir}/index.json has no '{split}' split")
    return index


class PackedTokens(torch.utils.data.Dataset):
    """Item i is tokens [i*L, (i+1)*L) of the split's token stream, read from the memmaps on demand.

    The shards hold each document as <s> ... </s>, back to back, so a window may span documents and files; the model
    learns document boundaries from those tokens (no cross-document attention mask). The trailing partial window is
    dropped. Nothing is loaded into RAM beyond one window; the memmaps are reopened after
    pickling (dataloader workers).
    """

    def __init__(self, shards_dir: Path, split: str, seq_len: int, max_items: int | None = None):
        self.shards_dir, self.split, self.seq_len = Path(shards_dir), split, int(seq_len)
        self._open()
        self.total_tokens = int(self._ends[-1]) if len(self._ends) else 0
        n = self.total_tokens // self.seq_len
        self.length = n if max_items is None else min(n, int(max_items))

    def _open(self) -> None:
        self._arrays = [a for a in _shards_reader().open_split(self.shards_dir, self.split) if len(a)]
        self._ends = np.cumsum([len(a) for a in self._arrays], dtype=np.int64)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_arrays", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return self.length

    def window(self, start: int, length: int) -> np.ndarray:
        out = np.empty(length, dtype=np.int64)
        filled = 0
        f = int(np.searchsorted(self._ends, start, side="right"))
        while filled < length:
            base = int(self._ends[f - 1]) if f else 0
            a = self._arrays[f]
            lo = start + filled - base
            take = min(length - filled, len(a) - lo)
            out[filled:filled + take] = a[lo:lo + take]
            filled += take
            f += 1
        return out

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        ids = torch.from_numpy(self.window(i * self.seq_len, self.seq_len))
        return {"input_ids": ids, "labels": ids.clone()}


# ---------------------------------------------------------------------------------------------------------------------
# SFT and DPO: jsonl records, validated one by one; bad ones are counted and skipped
# ---------------------------------------------------------------------------------------------------------------------


def _check_messages(msgs: Any, allowed: tuple[str, ...] = ROLES) -> str | None:
    """None when `msgs` is a usable list of messages, else the reason it is not."""
    if not isinstance(msgs, list) or not msgs:
        return "no_messages"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in allowed:
            return "bad_role"
        if m["role"] == "system" and i != 0:
            return "bad_role"
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            return "empty_content"
    return None


def check_sft_record(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return "not_an_object"
    why = _check_messages(rec.get("messages"))
    if why:
        return why
    if not any(m["role"] == "assistant" for m in rec["messages"]):
        return "no_assistant"
    return None


def check_dpo_record(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return "not_an_object"
    why = _check_messages(rec.get("prompt"))
    if why:
        return "prompt_" + why
    if rec["prompt"][-1]["role"] != "user":
        return "prompt_not_ending_with_user"
    for key in ("chosen", "rejected"):
        why = _check_messages(rec.get(key), allowed=("assistant",))
        if why:
            return f"{key}_{why}"
    return None


def _clean_messages(msgs: list[dict]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in msgs]


def read_jsonl_records(files: Iterable[Path], kind: str) -> tuple[list[dict], dict[str, int]]:
    """Valid records (only the fields the trainer needs) and a count of skipped ones by reason."""
    check = {"sft": check_sft_record, "dpo": check_dpo_record}[kind]
    keys = ("messages",) if kind == "sft" else ("prompt", "chosen", "rejected")
    records: list[dict] = []
    skipped: Counter[str] = Counter()
    for path in files:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    skipped["invalid_json"] += 1
                    continue
                why = check(rec)
                if why:
                    skipped[why] += 1
                    if skipped.total() <= 5:
                        log.warning("%s: %s:%d skipped (%s)", kind, path, lineno, why)
                    continue
                records.append({k: _clean_messages(rec[k]) for k in keys})
    if skipped:
        log.warning("%s: skipped %d invalid record(s): %s", kind, skipped.total(), dict(skipped))
    if not records:
        raise TrainDataError(f"{kind}.data: no valid record in {[str(p) for p in files]} (skipped: {dict(skipped)})")
    return records, dict(skipped)


def to_dataset(records: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(records)
