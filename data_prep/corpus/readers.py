"""Read jsonl, jsonl.gz, parquet and txt files into Documents; malformed input becomes rejects.

datatrove's own readers skip bad lines with a warning and drop documents without
text; here every line, row or file yields exactly one record, and the broken ones
carry a reason and their file:line, so nothing is lost silently.
"""

from __future__ import annotations

import base64
import gzip
import os
import zlib
from pathlib import Path
from typing import Any, Iterator

import orjson
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.base import BaseReader
from datatrove.utils.logging import logger

from data_prep.corpus import records as R

# name suffix -> format; checked longest first so .jsonl.gz is not taken for .gz
FORMATS = {".jsonl.gz": "jsonl", ".jsonl": "jsonl", ".parquet": "parquet", ".txt.gz": "txt", ".txt": "txt"}
_BOM = b"\xef\xbb\xbf"
_PARQUET_BATCH = 1024
_PROGRESS_EVERY = 500_000  # records; big files log progress between their start and end


def input_format(path: str | Path) -> str | None:
    name = str(path).lower()
    return next((fmt for suffix, fmt in FORMATS.items() if name.endswith(suffix)), None)


def id_root(files: list[str]) -> str:
    """Common folder of all inputs: default ids are paths below it, the same wherever the corpus is mounted."""
    return os.path.commonpath([os.path.dirname(f) for f in files]) if files else ""


class _Records:
    """Builds the one record each line/row/file yields, with its provenance."""

    def __init__(self, path: str, file_index: int, rel: str, text_key: str, id_key: str, provenance: dict):
        self.path, self.file_index, self.rel = path, file_index, rel
        self.text_key, self.id_key, self.provenance = text_key, id_key, provenance

    def make(self, line: int, text: str, doc_id: Any = None, extra: dict | None = None) -> Document:
        if doc_id is None or doc_id == "":  # line 0: a whole-file document (.txt), named by its path alone
            doc_id = self.rel if line == 0 else f"{self.rel}:{line}"
        meta = {**self.provenance, R.FILE: self.path, R.LINE: max(line, 1), R.FILE_INDEX: self.file_index}
        if extra:
            meta[R.EXTRA] = extra
        return Document(text=text, id=str(doc_id), metadata=meta)

    def undecodable(self, line: int, raw: bytes, err: UnicodeDecodeError, doc_id: Any = None,
                    extra: dict | None = None) -> Document:
        doc = self.make(line, raw.decode("utf-8", errors="replace"), doc_id, extra)
        doc.metadata[R.RAW_BASE64] = base64.b64encode(raw).decode("ascii")
        return R.reject(doc, R.INVALID_UTF8, f"{err.reason} at byte {err.start}")

    def unreadable(self, line: int, err: BaseException) -> Document:
        what = "file" if line <= 1 else f"file from record {line} on"
        return R.reject(self.make(line, ""), R.UNREADABLE_FILE, f"{what}: {type(err).__name__}: {err}")

    def from_mapping(self, line: int, obj: dict) -> Document:
        """A parsed JSON object or parquet row; the text key decides whether it is a document.
        Rejected ones keep the whole object under `extra`, so nothing of it is lost."""
        doc_id = obj.get(self.id_key)
        if self.text_key not in obj:
            return R.reject(self.make(line, "", doc_id, obj), R.MISSING_TEXT_KEY,
                            f"no key '{self.text_key}'; keys: {sorted(obj)[:20]}")
        text = obj[self.text_key]
        extra = {k: v for k, v in obj.items() if k not in (self.text_key, self.id_key)}
        if isinstance(text, bytes):  # parquet binary column
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as e:
                return self.undecodable(line, text, e, doc_id, extra)
        if not isinstance(text, str):
            kind = "null" if text is None else type(text).__name__
            return R.reject(self.make(line, "", doc_id, obj), R.NON_STRING_TEXT, f"'{self.text_key}' is {kind}")
        return self.make(line, text, doc_id, extra)

    def from_json_line(self, line: int, raw: bytes) -> Document:
        raw = raw.rstrip(b"\r\n")
        if line == 1:
            raw = raw.removeprefix(_BOM)
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return self.undecodable(line, raw, e)
        if not decoded.strip():
            return R.reject(self.make(line, decoded), R.BLANK_LINE)
        try:
            obj = orjson.loads(decoded)
        except orjson.JSONDecodeError as e:
            return R.reject(self.make(line, decoded), R.BAD_JSON, str(e))
        if not isinstance(obj, dict):
            return R.reject(self.make(line, decoded), R.NOT_AN_OBJECT, f"a JSON {type(obj).__name__}")
        return self.from_mapping(line, obj)


# Errors that mean "the file itself is broken": corrupt or truncated gzip, unreadable file.
_FILE_ERRORS = (OSError, EOFError, zlib.error)


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")


def read_jsonl(rec: _Records) -> Iterator[Document]:
    line = 0
    try:
        with _open_binary(rec.path) as f:
            for line, raw in enumerate(f, 1):
                yield rec.from_json_line(line, raw)
    except _FILE_ERRORS as e:
        yield rec.unreadable(line + 1, e)


def read_txt(rec: _Records) -> Iterator[Document]:
    """One document per file; its id is the file's path below the corpus root."""
    try:
        with _open_binary(rec.path) as f:
            raw = f.read().removeprefix(_BOM)
    except _FILE_ERRORS as e:
        yield rec.unreadable(1, e)
        return
    try:
        yield rec.make(0, raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        yield rec.undecodable(0, raw, e)


def read_parquet(rec: _Records) -> Iterator[Document]:
    import pyarrow
    import pyarrow.parquet as pq

    row = 0
    try:
        for batch in pq.ParquetFile(rec.path).iter_batches(batch_size=_PARQUET_BATCH):
            for obj in batch.to_pylist():
                row += 1
                yield rec.from_mapping(row, _jsonable(obj, rec.text_key))
    except (*_FILE_ERRORS, pyarrow.ArrowException) as e:
        yield rec.unreadable(row + 1, e)


def _jsonable(row: dict, text_key: str) -> dict:
    """Parquet values JSON cannot hold (decimals, bytes, ...) as their repr, so the writers never fail;
    a binary text column stays bytes for the reader to decode."""
    out = orjson.loads(orjson.dumps(row, default=repr, option=orjson.OPT_NON_STR_KEYS))
    if isinstance(row.get(text_key), bytes):
        out[text_key] = row[text_key]
    return out


_READERS = {"jsonl": read_jsonl, "txt": read_txt, "parquet": read_parquet}


class CorpusReader(BaseReader):
    """Reads its share of the input files (file i goes to task i % tasks), in input order.

    Each task's output is ordered by (file_index, line), which lets the merge step
    restore the global order with a streaming k-way merge.
    """

    name = "kgov corpus files (jsonl, jsonl.gz, parquet, txt)"

    def __init__(self, files: list[str], text_key: str = "text", id_key: str = "id",
                 source: str = "default", license: str = "unknown"):
        super().__init__(text_key=text_key, id_key=id_key)
        self.files = [str(f) for f in files]
        self.root = id_root(self.files)
        self.provenance = {"source": source, "license": license}

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        # first step by design: upstream documents would have no corpus position to merge on
        mine = range(rank, len(self.files), world_size)
        for n, index in enumerate(mine, 1):
            path = self.files[index]
            fmt = input_format(path)
            if fmt is None:
                raise ValueError(f"{path}: unsupported input type; use {', '.join(FORMATS)}")
            rel = os.path.relpath(path, self.root) if self.root else os.path.basename(path)
            rec = _Records(path, index, rel, self.text_key, self.id_key, self.provenance)
            self.stat_update("input_files")
            counts = {"records": 0, "malformed": 0}
            for doc in _READERS[fmt](rec):
                counts["records"] += 1
                counts["malformed"] += R.is_rejected(doc)
                self.stat_update("records_in")
                if counts["records"] % _PROGRESS_EVERY == 0:
                    logger.info(f"reading {path}: {counts['records']} records so far")
                yield doc
            logger.info(f"read {path} ({n}/{len(mine)} of task {rank}): {counts['records']} records, "
                        f"{counts['malformed']} malformed")
