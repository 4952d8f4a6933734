"""The parallel half of the shards writer: scan and tokenise the clean corpus in worker processes.

Pass 1 (scan_file): a whole input file per task; the worker reads it and returns only the per-source summary the
split rule needs. Pass 2 (encode): the parent reads raw lines in batches and writes what comes back; everything per
document (JSON parsing, the id hash, the split decision, tokenising, the `bos text eos` layout) runs in the workers,
one single-threaded tokenizer each (TOKENIZERS_PARALLELISM=false, RAYON_NUM_THREADS=1: no oversubscription).
Results come back in submission order with at most 2 x workers batches in flight (bounded memory), so the output
never depends on timing or on the worker count.

Why processes and not encode_batch's own Rust threads: measured on 2 idle cores (scripts/bench_shards.py corpus,
20 MB of Korean, 32k BPE), the same writer end to end ran at 13.6 MB/s with 2 worker processes against 11.4 MB/s
with one process calling encode_batch_fast on 2 rayon threads: rayon tokenises fast (16.6 MB/s on in-memory texts)
but leaves the gzip reading, JSON parsing, hashing and writing serial around each call. Processes also make
shards.workers the exact number of busy cores; rayon's global pool is sized once per process, possibly by an earlier
stage running in the same process.
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from data_prep.hashing import sha256_file
from data_prep.hashing import id_hash
from data_prep.shards.split import SplitScan
from data_prep.tokenizer.corpus import CorpusError, parse_record

META = np.dtype([("source", "<u2"), ("hash", "<u8")])  # per document: source number, sha256(id)[:8]
_BATCH_BYTES = 4 << 20  # a batch also ends at this many bytes of lines: long documents do not blow memory
_TOK: Any = None  # the worker's tokenizer
_DTYPE: np.dtype | None = None
_FRAME: tuple[list[int], list[int]] = ([], [])  # the ids before and after each document's text


@dataclass
class Encoded:
    """One split's documents of a batch, each framed by the tokenizer's bos/eos (see Encoder), back to back."""

    tokens: np.ndarray  # the token dtype
    lengths: np.ndarray  # int64, per document
    meta: np.ndarray  # META, per document
    chars: np.ndarray  # int64, characters of text per document


def load_tokenizer(tokenizer_json: str):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    tok.encode_special_tokens = True  # literal special-token text in documents stays text
    return tok


def _worker_init() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A killed writer (SIGKILL, OOM) cannot stop its pool; its workers would wait for work forever, so they watch."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def records(path: str, first_line: int, lines: list[bytes]) -> Iterator[tuple[int, str, str, str]]:
    """(line number, id, text, source) per non-blank line; a malformed one is an error naming file, line and key."""
    for lineno, raw in enumerate(lines, start=first_line):
        rec = parse_record(path, lineno, raw)
        if rec is not None:
            yield (lineno, *rec)


def line_batches(path: Path, batch_size: int) -> Iterator[tuple[int, list[bytes]]]:
    """(first line number, raw lines) of up to batch_size lines or _BATCH_BYTES bytes."""
    with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as f:
        first, lines, size = 1, [], 0
        for lineno, line in enumerate(f, start=1):
            lines.append(line)
            size += len(line)
            if len(lines) >= batch_size or size >= _BATCH_BYTES:
                yield first, lines
                first, lines, size = lineno + 1, [], 0
        if lines:
            yield first, lines


def scan_file(path: str, fraction: float, k: int) -> tuple[dict[str, SplitScan], str]:
    """Pass 1, a whole file per task (order does not matter here, so the worker reads the file itself and only
    the summary crosses the process boundary): per source, what the split rule needs; and the file's sha256, which
    tells a resumed run whether its finished outputs still belong to this file."""
    scans: dict[str, SplitScan] = {}
    for first, lines in line_batches(Path(path), 4096):
        hashes: dict[str, list[int]] = {}
        for _, doc_id, _, source in records(path, first, lines):
            hashes.setdefault(source, []).append(id_hash(doc_id))
        for s, h in hashes.items():
            scans.setdefault(s, SplitScan.new(fraction, k)).add_all(h)
    return scans, sha256_file(path)


def encode(path: str, first_line: int, lines: list[bytes], cutoffs: dict[str, int],
           sources: dict[str, int]) -> dict[str, Encoded]:
    """Pass 2: {"train": Encoded, "validation": Encoded} for the batch (documents in corpus order)."""
    docs = list(records(path, first_line, lines))
    for lineno, _, _, source in docs:
        if source not in sources:  # the file changed since the scan
            raise CorpusError(f"{path}:{lineno}: key 'metadata.source' is '{source}', not seen by the split scan")
    hashes = np.array([id_hash(doc_id) for _, doc_id, _, _ in docs], np.uint64)
    src = np.array([sources[s] for *_, s in docs], np.uint16)
    is_val = hashes < np.array([cutoffs[s] for *_, s in docs], np.uint64)
    ids = [e.ids for e in _TOK.encode_batch_fast([text for _, _, text, _ in docs], add_special_tokens=False)]
    chars = np.array([len(text) for _, _, text, _ in docs], np.int64)
    bos, eos = _FRAME
    extra = len(bos) + len(eos)
    out = {}
    for split, mask in (("train", ~is_val), ("validation", is_val)):
        sel = np.flatnonzero(mask)
        lengths = np.array([len(ids[i]) + extra for i in sel], np.int64)
        tokens = np.fromiter(chain.from_iterable(x for i in sel for x in (bos, ids[i], eos)), _DTYPE,
                             int(lengths.sum()))
        meta = np.empty(len(sel), META)
        meta["source"], meta["hash"] = src[sel], hashes[sel]
        out[split] = Encoded(tokens, lengths, meta, chars[sel])
    return out


class _Done:
    """A result computed in this process, with a Future's result()."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


@contextmanager
def _single_threaded():
    """encode_batch_fast in the parent (workers=1): keep the Rust pool out, so one worker means one core."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # read by `tokenizers` at every call
    try:
        yield
    finally:
        if old is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


class Encoder:
    """Runs scan/encode calls in `workers` processes (in this process when workers == 1), ordered and bounded:

        with Encoder(2, load_tokenizer(path), np.dtype("uint16"), frame=([bos], [eos])) as enc:
            for key, result in enc.map_ordered(tasks): ...   # tasks: (key, fn, args) or (key, None, value)

    frame: the ids encode() puts before and after each document's text (data_prep.tokenizer.special_ids).
    """

    def __init__(self, workers: int, tokenizer, dtype: np.dtype, frame: tuple[list[int], list[int]]):
        global _TOK, _DTYPE, _FRAME
        # set before the fork: the workers inherit them instead of loading again
        _TOK, _DTYPE, _FRAME = tokenizer, dtype, (list(frame[0]), list(frame[1]))
        self.workers = workers
        if workers > 1:
            # fork, not spawn: spawn re-imports __main__, so any script calling write_shards without a main guard
            # would fail, and it costs a fresh import per worker. Fork is safe here: the children only run their own
            # single-threaded tokenizer; the hazard of forking `tokenizers` is a Rust thread pool the parent used,
            # and the children never touch it (TOKENIZERS_PARALLELISM=false). The pool forks all its workers at the
            # first submit, before any helper thread of the executor exists.
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                            initializer=_worker_init)
        else:
            self.pool = None

    def __enter__(self) -> "Encoder":
        return self

    def __exit__(self, *exc) -> None:
        global _TOK, _FRAME
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        _TOK, _FRAME = None, ([], [])

    def _submit(self, fn: Callable, args: tuple) -> Future | _Done:
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        with _single_threaded():
            return _Done(fn(*args))

    def map_ordered(self, tasks) -> Iterator[tuple[Any, Any]]:
        """(key, result) per task, in task order. A task with fn None passes its value through in order."""
        pending: deque = deque()
        for key, fn, args in tasks:
            pending.append((key, _Done(args) if fn is None else self._submit(fn, args)))
            while len(pending) > 2 * self.workers:
                k, f = pending.popleft()
                yield k, f.result()
        while pending:
            k, f = pending.popleft()
            yield k, f.result()
