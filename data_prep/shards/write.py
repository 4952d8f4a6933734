"""Pre-tokenise the clean corpus into flat token files. Used by kgov_train.stages.shards.

<out>/train-00000.bin           token ids, raw little-endian uint16 (vocab <= 65536) or uint32
<out>/train-00000.idx.npy       int64 cumulative end offset of each document in that file
<out>/validation-00000.bin ...  the same for validation
<out>/index.json                format, dtype, special ids, tokenizer sha256, files and counts

Each document is stored as  <s> text </s>: bos marks a document start (the chat template and
`tokenizer(text)` start with <s> too), eos ends it (generation stops there). A document
never spans two files; a file rolls over before a document would take it past
max_tokens_per_file (so only a single document longer than that makes a larger file).

Ids are those of tokenizer.json with special-token matching off (transformers'
split_special_tokens=True): a literal "</s>" or "<|user|>" in a web page is text, not a
control token. "\n" and "\t" are ordinary added tokens and still match.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from tokenizers import Tokenizer
from tqdm import tqdm

from data_prep.hashing import sha256_file
from data_prep.shards.split import id_hash, validation_cutoff
from data_prep.tokenizer import specials as S
from data_prep.tokenizer.corpus import clean_files, iter_documents, iter_ids

FORMAT = "kgov-shards/1"
SPLITS = ("train", "validation")
STALE = ("*.bin", "*.idx.npy", "index.json")


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


@dataclass
class SplitWriter:
    out_dir: Path
    split: str
    dtype: np.dtype
    max_tokens: int
    files: list[dict] = field(default_factory=list)
    _f: object = None
    _ends: list[int] = field(default_factory=list)
    _tokens: int = 0

    def add(self, tokens: np.ndarray) -> None:
        if self._f is not None and self._tokens + len(tokens) > self.max_tokens:
            self._close_file()
        if self._f is None:
            name = f"{self.split}-{len(self.files):05d}.bin"
            self._f = open(self.out_dir / name, "wb")
            self.files.append({"path": name, "index": name[:-4] + ".idx.npy", "tokens": 0, "documents": 0})
        tokens.astype(self.dtype.newbyteorder("<"), copy=False).tofile(self._f)
        self._tokens += len(tokens)
        self._ends.append(self._tokens)

    def _close_file(self) -> None:
        self._f.close()
        entry = self.files[-1]
        np.save(self.out_dir / entry["index"], np.asarray(self._ends, dtype=np.int64))
        entry["tokens"], entry["documents"] = self._tokens, len(self._ends)
        self._f, self._ends, self._tokens = None, [], 0

    def close(self) -> dict:
        if self._f is not None:
            self._close_file()
        return {"files": self.files, "tokens": sum(f["tokens"] for f in self.files),
                "documents": sum(f["documents"] for f in self.files)}


def _batches(files: list[Path], size: int) -> Iterator[list[tuple[str, str]]]:
    batch = []
    for doc in iter_documents(files):
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_shards(clean_dir: Path, tokenizer_dir: Path, out_dir: Path, *, validation_fraction: float,
                 min_validation_docs: int, max_tokens_per_file: int, batch_size: int) -> dict:
    """Tokenise every document of clean_dir into out_dir; returns metrics (the index is in index.json)."""
    out_dir, tokenizer_json = Path(out_dir), Path(tokenizer_dir) / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise FileNotFoundError(f"{tokenizer_json}: missing; run the tokenizer stage first")
    out_dir.mkdir(parents=True, exist_ok=True)
    for pattern in STALE:  # an interrupted earlier run may have rolled over into more files
        for p in out_dir.glob(pattern):
            p.unlink()
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.encode_special_tokens = True  # literal special-token text in documents stays text
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    dtype = dtype_for(vocab_size)
    files = clean_files(clean_dir)

    # Pass 1 (ids only): the split cutoff needs the k smallest hashes, and tqdm a total.
    cutoff, n_docs = validation_cutoff(iter_ids(files), validation_fraction, min_validation_docs)
    writers = {s: SplitWriter(out_dir, s, dtype, max_tokens_per_file) for s in SPLITS}
    chars = {s: 0 for s in SPLITS}
    bos, eos = np.array([S.BOS_ID], np.int64), np.array([S.EOS_ID], np.int64)
    t0 = time.time()
    with tqdm(total=n_docs, unit="doc", desc="shards", mininterval=5) as bar:
        for batch in _batches(files, batch_size):
            encs = tok.encode_batch_fast([text for _, text in batch], add_special_tokens=False)
            for (doc_id, text), enc in zip(batch, encs):
                split = "validation" if id_hash(doc_id) < cutoff else "train"
                writers[split].add(np.concatenate([bos, np.asarray(enc.ids, dtype=np.int64), eos]))
                chars[split] += len(text)
            bar.update(len(batch))
    seconds = time.time() - t0
    index = {
        "format": FORMAT,
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "bos_token_id": S.BOS_ID, "eos_token_id": S.EOS_ID, "pad_token_id": S.PAD_ID,
        "document_layout": "<s> text </s>",
        "tokenizer_sha256": sha256_file(tokenizer_json),
        "split_rule": {"hash": "sha256(id)[:8] big-endian", "cutoff": cutoff,
                       "validation_fraction": validation_fraction, "min_validation_docs": min_validation_docs},
        "splits": {s: w.close() for s, w in writers.items()},
    }
    tmp = out_dir / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out_dir / "index.json")  # written last: its presence means the files are complete

    splits = index["splits"]
    total = sum(s["tokens"] for s in splits.values())
    metrics = {"dtype": dtype.name, "vocab_size": vocab_size, "files": sum(len(s["files"]) for s in splits.values()),
               "tokens": total, "tokens_per_sec": round(total / max(seconds, 1e-9), 1)}
    for s in SPLITS:
        metrics[f"{s}_documents"] = splits[s]["documents"]
        metrics[f"{s}_tokens"] = splits[s]["tokens"]
        # bos/eos excluded: the tokenizer's own compression on this split
        text_tokens = splits[s]["tokens"] - 2 * splits[s]["documents"]
        metrics[f"{s}_chars_per_token"] = round(chars[s] / text_tokens, 4) if text_tokens else None
    return metrics


def output_files(out_dir: Path) -> list[str]:
    """Every file the index lists, plus index.json: the stage's outputs."""
    index = json.loads((Path(out_dir) / "index.json").read_text(encoding="utf-8"))
    names = ["index.json"]
    for s in index["splits"].values():
        for f in s["files"]:
            names += [f["path"], f["index"]]
    return names
