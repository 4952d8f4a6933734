"""Read shards written by data_prep.shards.write (the pretrain stage's input).

    index = load_index(shards_dir)
    check_tokenizer(shards_dir, tokenizer_dir)        # refuse shards cut with another tokenizer
    arrays = open_split(shards_dir, "train")          # list of 1-D np.memmap of token ids
    ends = document_ends(shards_dir, "train")         # per file: int64 cumulative document ends
    meta = document_meta(shards_dir, "train")         # per file: source number and id hash per document
    for tokens in iter_documents(shards_dir, "validation"): ...   # bos ... eos per document (index: document_layout)
    mixture = open_mixture(shards_dir, "train")       # (schedule, ends) for data_prep.shards.stream, or None

Every open checks the file against index.json (size = tokens * itemsize, document counts), so a
truncated or replaced file fails with its path instead of yielding garbage tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np

from data_prep.shards.encode import META
from data_prep.shards.write import FORMAT, INDEX, SPLITS, sha256_file

_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


class ShardsError(RuntimeError):
    pass


def load_index(shards_dir: Path) -> dict:
    path = Path(shards_dir) / INDEX
    if not path.is_file():
        raise ShardsError(f"{path}: missing; run the shards stage first")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ShardsError(f"{path}: not valid JSON ({e})") from None
    if index.get("format") != FORMAT:
        raise ShardsError(f"{path}: key 'format' is {index.get('format')!r}, this reader knows {FORMAT!r}; "
                          "rerun the shards stage (force=true)")
    if index.get("dtype") not in _DTYPES:
        raise ShardsError(f"{path}: key 'dtype' is {index.get('dtype')!r}, expected one of {sorted(_DTYPES)}")
    for key in ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id", "tokenizer_sha256", "sources", "splits",
                "mixture"):
        if key not in index:
            raise ShardsError(f"{path}: key '{key}' missing")
    return index


def dtype(index: dict) -> np.dtype:
    return _DTYPES[index["dtype"]]


def _split(index: dict, shards_dir: Path, split: str) -> dict:
    if split not in index["splits"]:
        raise ShardsError(f"{Path(shards_dir) / INDEX}: no split '{split}' under key 'splits' "
                          f"(has {sorted(index['splits'])}; known splits {list(SPLITS)})")
    return index["splits"][split]


def _split_files(index: dict, shards_dir: Path, split: str, kind: str):
    """(entry, path) per file of the split, `kind` being "path" (tokens) or "index" (document ends)."""
    for entry in _split(index, shards_dir, split)["files"]:
        path = shards_dir / entry[kind]
        if not path.is_file():
            raise ShardsError(f"{path}: listed in {shards_dir / INDEX} (splits.{split}) but missing")
        yield entry, path


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ShardsError(f"{path}: not a readable .npy file ({e}); truncated or from another run") from None


def open_split(shards_dir: Path, split: str) -> list[np.memmap]:
    """One read-only memmap per file of the split, in order; [] for an empty split."""
    shards_dir = Path(shards_dir)
    index = load_index(shards_dir)
    dt = dtype(index)
    arrays = []
    for entry, path in _split_files(index, shards_dir, split, "path"):
        expected = entry["tokens"] * dt.itemsize
        actual = path.stat().st_size
        if actual != expected:
            raise ShardsError(f"{path}: {actual} bytes, but {shards_dir / INDEX} says {entry['tokens']} tokens of "
                              f"{index['dtype']} = {expected} bytes; the file is truncated or from another run")
        arrays.append(np.memmap(path, dtype=dt, mode="r", shape=(entry["tokens"],)) if entry["tokens"] else
                      np.zeros(0, dtype=dt))
    return arrays


def document_ends(shards_dir: Path, split: str) -> list[np.ndarray]:
    """Per file of the split: int64 end offset of each document (document i is [ends[i-1], ends[i])), memory-mapped."""
    shards_dir = Path(shards_dir)
    index = load_index(shards_dir)
    out = []
    for entry, path in _split_files(index, shards_dir, split, "index"):
        ends = _load_npy(path)
        if ends.ndim != 1 or len(ends) != entry["documents"] or (len(ends) and ends[-1] != entry["tokens"]):
            raise ShardsError(f"{path}: {len(ends)} documents ending at {ends[-1] if len(ends) else 0}, but "
                              f"{shards_dir / INDEX} says {entry['documents']} documents, {entry['tokens']} tokens")
        out.append(ends)
    return out


def document_meta(shards_dir: Path, split: str) -> list[np.ndarray]:
    """Per file of the split: source number (index.json "sources") and sha256(id)[:8] of each document."""
    shards_dir = Path(shards_dir)
    index = load_index(shards_dir)
    out = []
    for entry, path in _split_files(index, shards_dir, split, "docs"):
        meta = _load_npy(path)
        if meta.dtype != META or len(meta) != entry["documents"]:
            raise ShardsError(f"{path}: {len(meta)} records of {meta.dtype}, but {shards_dir / INDEX} says "
                              f"{entry['documents']} documents (expected dtype {META})")
        out.append(meta)
    return out


def open_mixture(shards_dir: Path, split: str) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """(schedule, document ends per file) when the split is read through a mixture schedule, else None.

    The schedule (data_prep.shards.mixture) is memory-mapped: (global document numbers, cumulative ends)."""
    shards_dir = Path(shards_dir)
    index = load_index(shards_dir)
    mix = index["mixture"] or {}
    if split != "train" or not mix.get("schedule"):
        return None
    path = shards_dir / mix["schedule"]
    if not path.is_file():
        raise ShardsError(f"{path}: named by key 'mixture.schedule' of {shards_dir / INDEX} but missing")
    sched = _load_npy(path)
    ends = document_ends(shards_dir, split)
    if sched.shape != (2, mix["documents"]) or (sched.shape[1] and sched[1, -1] != mix["tokens"]):
        raise ShardsError(f"{path}: shape {sched.shape}, but key 'mixture' of {shards_dir / INDEX} says "
                          f"{mix['documents']} scheduled documents of {mix['tokens']} tokens; the file is truncated or "
                          f"from another run")
    return sched, ends


def iter_documents(shards_dir: Path, split: str) -> Iterator[np.ndarray]:
    """Token ids of each document (index.json's document_layout, e.g. <s> ... </s>), in corpus order."""
    for arr, ends in zip(open_split(shards_dir, split), document_ends(shards_dir, split)):
        start = 0
        for end in ends:
            yield arr[start:end]
            start = int(end)


def check_tokenizer(shards_dir: Path, tokenizer_dir: Path) -> None:
    """Raise ShardsError unless the shards were cut with tokenizer_dir/tokenizer.json."""
    shards_dir, tokenizer_json = Path(shards_dir), Path(tokenizer_dir) / "tokenizer.json"
    index = load_index(shards_dir)
    if not tokenizer_json.is_file():
        raise ShardsError(f"{tokenizer_json}: missing; cannot check it against {shards_dir / INDEX}")
    actual = sha256_file(tokenizer_json)
    if actual != index["tokenizer_sha256"]:
        raise ShardsError(
            f"shards {shards_dir} were cut with another tokenizer: {shards_dir / INDEX} has tokenizer_sha256 "
            f"{index['tokenizer_sha256']}, but {tokenizer_json} has sha256 {actual}. Rerun the shards stage "
            f"with this tokenizer (force=true) or point to the tokenizer the shards were cut with")
