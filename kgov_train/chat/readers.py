"""Records from local jsonl, json, parquet and csv/tsv files, each with where it came from.

    .jsonl .ndjson (.gz)  one JSON object a line; blank lines are skipped; position: `line` (1-based)
    .json (.gz)           one JSON list of records; position: `row` (0-based index in the list)
    .parquet              one record a row (pyarrow); position: `row` (0-based index in the file)
    .csv .tsv (.gz)       a header line, then one record a row (Q/A sheets such as ChatbotData.csv, UTF-8);
                          position: `line` (1-based, the header is line 1)

A line or row that cannot be read is yielded as an Unreadable (reason invalid_json, invalid_utf8 or unreadable_row)
so it is counted and written to the rejects file like any other rejected record. A file that cannot be read at all
(not JSON, not a list, not parquet, missing) raises ChatDataError naming the recipe key and the file.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from kgov_train.chat.errors import ChatDataError

TYPES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".jsonl.gz": "jsonl", ".ndjson.gz": "jsonl", ".json": "json",
         ".json.gz": "json", ".parquet": "parquet", ".csv": "csv", ".csv.gz": "csv", ".tsv": "tsv", ".tsv.gz": "tsv"}
PARQUET_BATCH = 1024


def file_type(path: Path | str) -> str | None:
    """jsonl, json, parquet, csv or tsv by the file name's ending; None for anything else."""
    name = str(path).lower()
    return next((t for suffix, t in TYPES.items() if name.endswith(suffix)), None)


@dataclass(frozen=True, slots=True)
class Origin:
    dataset: str
    file: str
    line: int | None = None  # jsonl, 1-based
    row: int | None = None  # json list / parquet, 0-based

    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else f"{self.file}[row {self.row}]"

    def fields(self) -> dict[str, Any]:
        pos = {"line": self.line} if self.line is not None else {"row": self.row}
        return {"dataset": self.dataset, "file": self.file, **pos}


@dataclass(slots=True)
class Unreadable:
    reason: str  # invalid_json | invalid_utf8 | unreadable_row
    raw: str | None  # the line as text (undecodable bytes replaced)
    detail: str | None = None  # the parser's message


def _open(path: Path):
    return gzip.open(path, "rb") if str(path).lower().endswith(".gz") else open(path, "rb")


def read_records(path: Path, dataset: str, key: str) -> Iterator[tuple[Origin, Any]]:
    """(origin, record or Unreadable) for every record of one file. `key`: the recipe key of its inputs."""
    kind = file_type(path)
    reader = {"jsonl": _jsonl, "json": _json, "parquet": _parquet, "csv": _delimited, "tsv": _delimited}.get(kind)
    if reader is None:
        raise ChatDataError(f"{key}: {path} is not a .jsonl, .json, .parquet, .csv or .tsv file")
    try:
        yield from reader(Path(path), dataset, key)
    except (OSError, EOFError) as e:  # missing, unreadable, truncated gzip
        raise ChatDataError(f"{key}: cannot read {path}: {e}") from None


def _jsonl(path: Path, dataset: str, key: str) -> Iterator[tuple[Origin, Any]]:
    file = str(path)
    with _open(path) as f:
        for lineno, raw in enumerate(f, 1):
            origin = Origin(dataset, file, line=lineno)
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield origin, Unreadable("invalid_utf8", raw.decode("utf-8", "replace").rstrip("\r\n"), str(e))
                continue
            if not line.strip():
                continue
            try:
                yield origin, json.loads(line)
            except json.JSONDecodeError as e:
                yield origin, Unreadable("invalid_json", line.rstrip("\r\n"), str(e))


def _delimited(path: Path, dataset: str, key: str) -> Iterator[tuple[Origin, Any]]:
    """A row is a record keyed by the header; a row with more or fewer cells than the header is unreadable_row."""
    import csv
    import io

    file = str(path)
    with _open(path) as raw:
        try:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            reader = csv.reader(text, delimiter="\t" if file_type(path) == "tsv" else ",")
            header = next(reader, None)
            if not header:
                raise ChatDataError(f"{key}: {path} has no header line (the column names, e.g. Q,A)")
            line = reader.line_num
            for cells in reader:
                origin, line = Origin(dataset, file, line=line + 1), reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    yield origin, Unreadable("unreadable_row", ",".join(cells),
                                             f"{len(cells)} cells under a header of {len(header)}")
                    continue
                yield origin, dict(zip(header, cells))
        except UnicodeDecodeError as e:
            raise ChatDataError(f"{key}: {path} is not UTF-8 text ({e}); convert it (e.g. iconv -f cp949 -t utf-8)") \
                from None
        except csv.Error as e:
            raise ChatDataError(f"{key}: {path}: not a readable {file_type(path)} file ({e})") from None


def _json(path: Path, dataset: str, key: str) -> Iterator[tuple[Origin, Any]]:
    with _open(path) as f:
        data = f.read()
    try:
        records = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise ChatDataError(f"{key}: {path} is not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise ChatDataError(f"{key}: {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); a .json "
                            "input holds one list of records (use .jsonl for one record a line)") from None
    if not isinstance(records, list):
        raise ChatDataError(f"{key}: {path} holds a JSON {type(records).__name__}, not a list of records (use .jsonl "
                            "for one record a line)")
    file = str(path)
    for i, rec in enumerate(records):
        yield Origin(dataset, file, row=i), rec


def _parquet(path: Path, dataset: str, key: str) -> Iterator[tuple[Origin, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        batches = pf.iter_batches(batch_size=PARQUET_BATCH)
    except (pa.ArrowException, OSError) as e:
        raise ChatDataError(f"{key}: {path} is not a readable parquet file ({e})") from None
    file, start = str(path), 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except pa.ArrowException as e:
            raise ChatDataError(f"{key}: {path}: parquet data after row {start} cannot be read ({e})") from None
        try:
            rows = batch.to_pylist()
        except Exception:  # a value Python cannot hold (e.g. an out-of-range timestamp): row by row
            rows = [_row(batch, i) for i in range(batch.num_rows)]
        for i, rec in enumerate(rows):
            yield Origin(dataset, file, row=start + i), rec
        start += batch.num_rows


def _row(batch, i: int) -> Any:
    try:
        return batch.slice(i, 1).to_pylist()[0]
    except Exception as e:
        return Unreadable("unreadable_row", None, f"{type(e).__name__}: {e}")
