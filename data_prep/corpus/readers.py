"""Read jsonl(.gz), parquet, csv/tsv(.gz), txt(.gz), HWP 5 and HWPX files into Documents;
malformed input becomes rejects.

datatrove's own readers skip bad lines with a warning and drop documents without
text; here every line, row or file yields exactly one record, and the broken ones
carry a reason and their file:line, so nothing is lost silently. An .hwp/.hwpx file
is one document, like a .txt file.

Every record carries its provenance in metadata: source, license, file, line and
input_sha256 (the sha256 of the whole input file), from the InputFile it came from. `file` is
the path relative to the source's root (the common folder of that source's files; a source of
one file: its name), never an absolute path, so the same corpus at another path (another
machine, mount point, clone) gives the same records. The absolute paths and their hashes are in
the data stage's manifest (`inputs`: path, sha256, source and file).

jsonl/csv/tsv/txt bytes are decoded in the source's encoding (UTF-8, or e.g. cp949 for many
data.go.kr exports); parquet and HWP/HWPX define their own.
"""

from __future__ import annotations

import base64
import codecs
import csv
import gzip
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.readers.base import BaseReader
from datatrove.utils.logging import logger

from data_prep.corpus import records as R
from data_prep.hashing import sha256_file
from data_prep.corpus.progress import Progress
from data_prep.corpus import hwp
from data_prep.corpus.step import CorpusStep

# name suffix -> format; checked in this order, so a longer suffix must come before its tail (.jsonl.gz, .gz)
FORMATS = {".jsonl.gz": "jsonl", ".jsonl": "jsonl", ".parquet": "parquet", ".txt.gz": "txt", ".txt": "txt",
           ".csv.gz": "csv", ".csv": "csv", ".tsv.gz": "tsv", ".tsv": "tsv", ".hwpx": "hwp", ".hwp": "hwp"}
# Provenance keys every record's metadata carries (besides records.FILE and records.LINE).
SOURCE, LICENSE, INPUT_SHA256 = R.SOURCE, "license", "input_sha256"
_BOM = b"\xef\xbb\xbf"
_ASCII = "\n\r\t ,\"{}:az09"  # what an encoding must write as ASCII for the byte-level line split
_PARQUET_BATCH = 1024


def encoding_name(encoding: str) -> str:
    """The codec's canonical name (cp949 for ks_c_5601-1987, ...); utf-8-sig is utf-8, the reader strips the BOM."""
    name = codecs.lookup(encoding).name
    return "utf-8" if name == "utf-8-sig" else name


def encoding_problem(encoding: str) -> str | None:
    """Why the readers cannot use `encoding`, or None. Lines are split on 0x0A bytes before decoding, which is
    right for encodings that keep ASCII bytes as they are: UTF-8, and CP949/EUC-KR, whose trail bytes
    (0x41-0xFE) never equal 0x0A; not for UTF-16/32 or the stateful ISO-2022 ones."""
    try:
        name = encoding_name(encoding)
    except LookupError:
        return f"unknown encoding '{encoding}'"
    try:
        ascii_safe = _ASCII.encode(name) == _ASCII.encode("ascii")
    except LookupError:  # base64, rot13, ...: bytes-to-bytes or str-to-str codecs
        return f"'{encoding}' is not a text encoding"
    return None if ascii_safe else f"encoding '{encoding}' is not ASCII-compatible (utf-16/32, iso-2022-*)"


def input_format(path: str | Path) -> str | None:
    name = str(path).lower()
    return next((fmt for suffix, fmt in FORMATS.items() if name.endswith(suffix)), None)


@dataclass(frozen=True)
class InputFile:
    """One input file and the source it belongs to; keys differ per source, so they live here."""

    path: str
    source: str = "default"  # the recipe's source name
    license: str = "unknown"  # the source's license, copied into every record
    text_key: str = "text"  # jsonl/parquet key or csv column holding the text
    id_key: str = "id"  # key/column holding the record id; missing or empty: <source>/<file>:<line> (source_name)
    sha256: str = ""  # sha256 of the file's bytes; "" = the reader hashes it in its own task
    encoding: str = "utf-8"  # of jsonl/csv/tsv/txt bytes, e.g. cp949 (parquet and HWP/HWPX define their own)

    def __post_init__(self):  # fail before any file is read, not as one reject per line
        problem = encoding_problem(self.encoding)
        if problem:
            raise ValueError(f"{self.path} (source '{self.source}'): {problem}")


def describe_inputs(paths: Iterable[str | Path], source: str = "default", license: str = "unknown",
                    text_key: str = "text", id_key: str = "id", hash_files: bool = True,
                    encoding: str = "utf-8") -> list[InputFile]:
    """InputFiles for one source's paths, hashed here (streaming) unless hash_files=False."""
    problem = encoding_problem(encoding)
    if problem:  # before hashing anything
        raise ValueError(f"source '{source}': {problem}")
    return [InputFile(str(p), source, license, text_key, id_key, sha256_file(str(p)) if hash_files else "",
                      encoding) for p in paths]


def id_root(files: list[str]) -> str:
    """Common folder of some files ("" for none, or for bare names in the working folder)."""
    return os.path.commonpath([os.path.dirname(f) for f in files]) if files else ""


def source_roots(inputs: Iterable[InputFile]) -> dict[str, str]:
    """Each source's root: the common folder of its files, so a source of one file is rooted at its folder."""
    files: dict[str, list[str]] = {}
    for i in inputs:
        files.setdefault(i.source, []).append(i.path)
    return {source: id_root(paths) for source, paths in files.items()}


def relative_path(path: str, root: str) -> str:
    """`path` below its source's root, with '/' separators: what records carry as `file`."""
    rel = os.path.relpath(path, root) if root else os.path.basename(path)
    return rel.replace(os.sep, "/")


def source_name(source: str, rel: str) -> str:
    """A file's portable name, <source>/<path below the source's root>: the prefix of default ids and of
    reject locations, unique across sources and the same wherever each source is mounted."""
    return f"{source}/{rel}"


class _Records:
    """Builds the one record each line/row/file yields, with its provenance."""

    def __init__(self, path: str, file_index: int, rel: str, name: str, text_key: str, id_key: str,
                 provenance: dict, encoding: str = "utf-8"):
        # path: where to read it here; rel: below the source's root (metadata `file`); name: <source>/<rel>
        self.path, self.file_index, self.rel, self.name = path, file_index, rel, name
        self.text_key, self.id_key, self.provenance = text_key, id_key, provenance
        self.encoding = encoding_name(encoding)

    def strip_bom(self, raw: bytes) -> bytes:
        """A UTF-8 BOM is no BOM in other encodings (in cp949 it starts a two-byte character)."""
        return raw.removeprefix(_BOM) if self.encoding == "utf-8" else raw

    def make(self, line: int, text: str, doc_id: Any = None, extra: dict | None = None) -> Document:
        if doc_id is None or doc_id == "":  # line 0: a whole-file document (.txt, .hwp), named by its path alone
            doc_id = self.name if line == 0 else f"{self.name}:{line}"
        meta = {**self.provenance, R.FILE: self.rel, R.LINE: max(line, 1), R.FILE_INDEX: self.file_index}
        if extra:
            meta[R.EXTRA] = extra
        return Document(text=text, id=str(doc_id), metadata=meta)

    def undecodable(self, line: int, raw: bytes, err: UnicodeDecodeError, doc_id: Any = None,
                    extra: dict | None = None) -> Document:
        """`err` names the encoding that failed: the file's, or utf-8 for a parquet binary column."""
        enc = encoding_name(err.encoding)
        doc = self.make(line, raw.decode(enc, errors="replace"), doc_id, extra)
        doc.metadata[R.RAW_BASE64] = base64.b64encode(raw).decode("ascii")
        if enc == "utf-8":
            return R.reject(doc, R.INVALID_UTF8, f"{err.reason} at byte {err.start}")
        return R.reject(doc, R.INVALID_ENCODING, f"not {enc}: {err.reason} at byte {err.start}")

    def unreadable(self, line: int, err: BaseException) -> Document:
        what = "file" if line <= 1 else f"file from record {line} on"
        message = str(err).replace(self.path, self.name)  # OSError names the absolute path: not in the records
        return R.reject(self.make(line, ""), R.UNREADABLE_FILE, f"{what}: {type(err).__name__}: {message}")

    def bad_csv(self, line: int, raw: bytes, detail: str) -> Document:
        text = raw.decode(self.encoding, errors="replace").rstrip("\r\n")
        return R.reject(self.make(line, text), R.BAD_CSV, detail)

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
                text = text.decode("utf-8")  # parquet's UTF8 logical type, whatever the source's encoding
            except UnicodeDecodeError as e:
                return self.undecodable(line, text, e, doc_id, extra)
        if not isinstance(text, str):
            kind = "null" if text is None else type(text).__name__
            return R.reject(self.make(line, "", doc_id, obj), R.NON_STRING_TEXT, f"'{self.text_key}' is {kind}")
        return self.make(line, text, doc_id, extra)

    def from_json_line(self, line: int, raw: bytes) -> Document:
        raw = raw.rstrip(b"\r\n")
        if line == 1:
            raw = self.strip_bom(raw)
        try:
            decoded = raw.decode(self.encoding)
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
    """One document per file; its id is <source>/<path below the source's root> (source_name)."""
    try:
        with _open_binary(rec.path) as f:
            raw = rec.strip_bom(f.read())
    except _FILE_ERRORS as e:
        yield rec.unreadable(1, e)
        return
    try:
        yield rec.make(0, raw.decode(rec.encoding))
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


def read_hwp(rec: _Records) -> Iterator[Document]:
    """One document per .hwp/.hwpx file, named by its path like a .txt file; an encrypted, unsupported
    or damaged document is one reject whose detail names the failing part (stream, zip member)."""
    try:
        text = hwp.extract_text(rec.path)
    except OSError as e:
        yield rec.unreadable(1, e)
    except hwp.DocumentError as e:
        yield R.reject(rec.make(0, ""), e.reason, e.detail.replace(rec.path, rec.name))  # no absolute path
    else:
        yield rec.make(0, text)


# csv fields may hold whole documents; the default limit (128 KiB) would reject long ones
_CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


class _PhysicalLines:
    """Feeds csv.reader one physical line at a time, keeping the raw bytes of the current row and
    whether any of its lines does not decode, so a row maps back to its first line and its exact bytes.
    Splitting on 0x0A bytes before decoding is safe: encoding_problem admits only ASCII-compatible encodings."""

    def __init__(self, f, rec: _Records):
        self.f, self.rec, self.count, self.raw, self.decode_error = f, rec, 0, [], None

    def start_row(self) -> int:
        """Forget the previous row; the line number the next row starts on."""
        self.raw, self.decode_error = [], None
        return self.count + 1

    def __iter__(self):
        enc = self.rec.encoding
        for raw in self.f:
            self.count += 1
            if self.count == 1:
                raw = self.rec.strip_bom(raw)
            self.raw.append(raw)
            try:
                yield raw.decode(enc)
            except UnicodeDecodeError as e:
                if self.decode_error is None:  # the first bad byte, counted from the row's start
                    offset = sum(map(len, self.raw[:-1]))
                    self.decode_error = UnicodeDecodeError(e.encoding, raw, offset + e.start, offset + e.end,
                                                           e.reason)
                yield raw.decode(enc, errors="surrogateescape")  # keeps the csv parser's quote state going


def read_csv(rec: _Records, delimiter: str = ",") -> Iterator[Document]:
    """A header row, then one record per row: the text_key column is the text, id_key the id, the other
    columns go to metadata `extra` (all strings). `line` is the physical line a row starts on, also for
    rows whose quoted fields span lines. Bad quoting, a wrong number of fields or undecodable bytes make
    that row a reject; a broken header makes the file one bad_csv reject, since no row can be read
    without it."""
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    line = 1
    try:
        with _open_binary(rec.path) as f:
            lines = _PhysicalLines(f, rec)
            rows = csv.reader(lines, delimiter=delimiter, strict=True)
            header = None
            while True:
                line = lines.start_row()
                try:
                    row = next(rows)
                except StopIteration:
                    return
                except csv.Error as e:
                    if header is None:
                        yield rec.bad_csv(line, b"".join(lines.raw), f"header row: {e}")
                        return
                    yield rec.bad_csv(line, b"".join(lines.raw), str(e))
                    continue
                raw = b"".join(lines.raw)
                if not raw.strip():  # an empty or whitespace-only line outside any quoted field
                    yield R.reject(rec.make(line, raw.decode(rec.encoding, errors="replace").rstrip("\r\n")),
                                   R.BLANK_LINE)
                elif header is None:
                    if err := lines.decode_error:
                        enc = "UTF-8" if rec.encoding == "utf-8" else rec.encoding
                        yield rec.bad_csv(line, raw, f"header row: not {enc}: {err.reason} at byte {err.start}")
                        return
                    header = _unique_columns(row)
                elif lines.decode_error:
                    yield rec.undecodable(line, raw.rstrip(b"\r\n"), lines.decode_error)
                elif len(row) != len(header):
                    yield rec.bad_csv(line, raw, f"{len(row)} fields, the header has {len(header)}")
                else:
                    yield rec.from_mapping(line, dict(zip(header, row, strict=True)))
    except _FILE_ERRORS as e:
        yield rec.unreadable(line, e)


def _unique_columns(names: list[str]) -> list[str]:
    """Header names with repeats renamed name.1, name.2, ... so no column is lost in the row dict."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append(name if n == 0 else f"{name}.{n}")
    return out


def read_tsv(rec: _Records) -> Iterator[Document]:
    return read_csv(rec, delimiter="\t")


_READERS = {"jsonl": read_jsonl, "txt": read_txt, "parquet": read_parquet, "csv": read_csv, "tsv": read_tsv,
            "hwp": read_hwp}


class CorpusReader(CorpusStep, BaseReader):
    """Reads its share of the input files (file i goes to task i % tasks), in input order.

    Each task's output is ordered by (file_index, line), which lets the merge step
    restore the global order with a streaming k-way merge.
    """

    name = "kgov corpus files (jsonl, parquet, csv, tsv, txt, hwp, hwpx)"

    def __init__(self, inputs: list[InputFile]):
        super().__init__()
        bad = [i for i in inputs if not isinstance(i, InputFile)]
        if bad:
            raise TypeError(f"CorpusReader takes InputFile items (see describe_inputs), got {type(bad[0]).__name__}")
        self.inputs = list(inputs)
        self.files = [i.path for i in self.inputs]
        self.roots = source_roots(self.inputs)
        self.rels = [relative_path(i.path, self.roots[i.source]) for i in self.inputs]
        owner: dict[str, str] = {}
        for i, rel in zip(self.inputs, self.rels):  # default ids and locations must name one file each
            name = source_name(i.source, rel)
            if owner.setdefault(name, i.path) != i.path:
                raise ValueError(f"{owner[name]} and {i.path} are both '{name}' (source '{i.source}'); "
                                 "rename a source so that no source name is another's name plus '/<folder>'")

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        # first step by design: upstream documents would have no corpus position to merge on
        mine = range(rank, len(self.inputs), world_size)
        progress = Progress(rank, [self.inputs[i].path for i in mine])
        for n, index in enumerate(mine, 1):
            src = self.inputs[index]
            path = src.path
            fmt = input_format(path)
            if fmt is None:
                raise ValueError(f"{path}: unsupported input type; use {', '.join(FORMATS)}")
            rel = self.rels[index]
            sha = src.sha256 or _sha256_or_empty(path)
            provenance = {SOURCE: src.source, LICENSE: src.license, INPUT_SHA256: sha}
            rec = _Records(path, index, rel, source_name(src.source, rel), src.text_key, src.id_key, provenance,
                           src.encoding)
            self.stat_update("input_files")
            counts = {"records": 0, "malformed": 0}
            for doc in _READERS[fmt](rec):
                counts["records"] += 1
                counts["malformed"] += R.is_rejected(doc)
                self.stat_update("records_in")
                progress.doc()
                yield doc
            progress.file_done(path)
            logger.info(f"read {path} ({n}/{len(mine)} of task {rank}): {counts['records']} records, "
                        f"{counts['malformed']} malformed")
        progress.log()


def _sha256_or_empty(path: str) -> str:
    """An unreadable file still yields its unreadable_file reject; its hash is then just unknown."""
    try:
        return sha256_file(path)
    except OSError:
        return ""
