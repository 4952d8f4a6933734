"""Training data of the pretrain stage: packed token windows over the shards (chat data: kgov_train.chat).

Imported only inside training processes (it needs torch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kgov_train.errors import TrainDataError

log = logging.getLogger("kgov_train")


# ---------------------------------------------------------------------------------------------------------------------
# Pretraining: fixed-length windows over the concatenated token stream of a split
# ---------------------------------------------------------------------------------------------------------------------


def _shards_reader():
    from data_prep.shards import read  # written by the data_prep engineers; torch-free

    return read


def check_shards(shards_dir: Path, tokenizer_dir: Path, tokenizer) -> dict[str, Any]:
    """Refuse shards that were not encoded with this tokenizer; return their index.

    The shards record the tokenizer's own special ids (data_prep.tokenizer.special_ids); a tokenizer without a pad
    token (Llama-2, Llama-3, GPT-NeoX) has pad_token_id null there and None here, which agree: pretraining packs
    windows and never pads."""
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
    """Item i is tokens [i*L, (i+1)*L) of the split's token stream (data_prep.shards.stream), read on demand.

    The stream is the train documents in the mixture schedule's order when the shards have one (per-source weights;
    `mixed=False` reads the files in corpus order instead), else the files back to back; validation is never mixed.
    Documents are `bos text eos` (index.json's document_layout) back to back, so a window may span documents and
    files; the model learns document boundaries from those tokens (no cross-document attention mask). The trailing
    partial window is dropped. Nothing is loaded into RAM beyond one window (and the schedule's memory map); the
    memmaps are reopened after pickling (dataloader workers).

    The HF Trainer shards and shuffles items with its own sampler. `sampler(rank, world_size, seed, start_sample)`
    is the resumable alternative: the items an uninterrupted run reads from global sample `start_sample` on.
    """

    def __init__(self, shards_dir: Path, split: str, seq_len: int, max_items: int | None = None, mixed: bool = True):
        self.shards_dir, self.split, self.seq_len, self.mixed = Path(shards_dir), split, int(seq_len), mixed
        self._open()
        self.total_tokens = self._stream.total_tokens
        n = self.total_tokens // self.seq_len
        self.length = n if max_items is None else min(n, int(max_items))

    def _open(self) -> None:
        from data_prep.shards.stream import TokenStream

        reader = _shards_reader()
        open_mixture = getattr(reader, "open_mixture", None)  # stand-ins in tests offer open_split only
        mixture = open_mixture(self.shards_dir, self.split) if self.mixed and open_mixture else None
        self._stream = TokenStream(reader.open_split(self.shards_dir, self.split), mixture)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_stream", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return self.length

    def window(self, start: int, length: int) -> np.ndarray:
        return self._stream.window(start, length)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        ids = torch.from_numpy(self.window(i * self.seq_len, self.seq_len))
        return {"input_ids": ids, "labels": ids.clone()}

    def sampler(self, rank: int = 0, world_size: int = 1, seed: int | None = None, start_sample: int = 0,
                epochs: int = 1) -> "ResumableSampler":
        return ResumableSampler(self.length, rank, world_size, seed, start_sample, epochs)


class ResumableSampler(torch.utils.data.Sampler):
    """Item numbers for one rank (data_prep.shards.stream.sample_indices): global sample g goes to rank
    g % world_size, each epoch in a seeded order; start_sample = global samples already consumed by all ranks."""

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1, seed: int | None = None,
                 start_sample: int = 0, epochs: int = 1):
        self.kwargs = dict(rank=rank, world_size=world_size, start_sample=start_sample, epochs=epochs)
        self.num_items, self.seed = num_items, seed

    def __iter__(self):
        from data_prep.shards.stream import sample_indices

        return sample_indices(self.num_items, seed=self.seed, **self.kwargs)

    def __len__(self) -> int:
        from data_prep.shards.stream import count_samples

        return count_samples(self.num_items, **self.kwargs)
