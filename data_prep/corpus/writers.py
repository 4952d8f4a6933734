"""Writers: per-task work files, and the final clean/ and rejected/ files.

The final files are byte-for-byte reproducible: the same corpus and settings give
the same sha256 whatever tasks/workers were used, so downstream stages that key on
input hashes are not rerun for nothing.
"""

from __future__ import annotations

import gzip
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

import orjson
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import get_datafolder

from data_prep.corpus import records as R
from data_prep.corpus.step import CorpusStep

# Final files are split at this many uncompressed bytes, so later stages can read them in parallel.
MAX_FILE_BYTES = 256 * 1024 * 1024
# The merge that writes the final files is one process: on Korean text level 1 compresses ~3x faster than
# zlib's default 6, for files ~25% larger (Python's gzip default, 9, is slower still).
_GZIP_LEVEL = 1
_CHUNK = 1 << 20  # bytes of records handed to the file thread at once
_PENDING = 8  # chunks in flight before the producer waits (bounds memory at ~8 MiB per output)


class _ReproducibleGzip(gzip.GzipFile):
    """gzip with mtime 0 and no name in the header (the stdlib writes the current time),
    closing the underlying file with it."""

    def __init__(self, raw: IO[bytes]):
        super().__init__(filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0)
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


class JsonlFiles:
    """Append-only jsonl output of one task: `NNN_<rank>.jsonl[.gz]` parts of at most `max_file_bytes`
    uncompressed bytes (a part is closed once it reaches the bound), or one `<rank>.jsonl` without a bound.

    Records are buffered and handed to a background thread in 1 MiB chunks; gzip (zlib) and the
    file writes release the GIL there, so the single-process merge pass compresses on the second core.
    Chunks are written in order by that one thread, so the bytes do not depend on timing.
    """

    def __init__(self, folder: str, rank: int, gzip_output: bool, max_file_bytes: int | None):
        self.folder = get_datafolder(folder)
        self.rank, self.gzip, self.max_file_bytes = rank, gzip_output, max_file_bytes
        self.part, self.part_bytes, self.file = 0, 0, None
        self.buf: list[bytes] = []
        self.buf_bytes = 0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jsonl")
        self.pending: deque[Future] = deque()

    def _name(self) -> str:
        if self.max_file_bytes is None:
            return f"{self.rank:05d}.jsonl"
        return f"{self.part:03d}_{self.rank:05d}.jsonl" + (".gz" if self.gzip else "")

    def write(self, line: bytes) -> None:
        if self.file is None:
            raw = self.folder.open(self._name(), "wb")
            self.file = _ReproducibleGzip(raw) if self.gzip else raw
        self.buf.append(line)
        self.buf_bytes += len(line)
        self.part_bytes += len(line)
        if self.buf_bytes >= _CHUNK:
            self._submit(self.file.write, b"".join(self.buf))
        if self.max_file_bytes is not None and self.part_bytes >= self.max_file_bytes:
            self._end_part()
            self.part += 1

    def _submit(self, fn, *args) -> None:
        self.buf, self.buf_bytes = [], 0
        self.pending.append(self.pool.submit(fn, *args))
        while len(self.pending) > _PENDING or (self.pending and self.pending[0].done()):
            self.pending.popleft().result()  # raises what the thread raised (disk full, ...)

    def _end_part(self) -> None:
        if self.file is not None:
            if self.buf:
                self._submit(self.file.write, b"".join(self.buf))
            self._submit(self.file.close)
            self.file, self.part_bytes = None, 0

    def close(self) -> None:
        try:
            self._end_part()
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)


class WorkWriter(CorpusStep):
    """Per-task intermediate records, uncompressed (they live minutes), every field kept."""

    type = "💽 - WRITER"
    name = "kgov work records"

    def __init__(self, output_folder: str):
        super().__init__()
        self.output_folder = output_folder

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        out = JsonlFiles(self.output_folder, rank, gzip_output=False, max_file_bytes=None)
        try:
            for doc in data:
                out.write(orjson.dumps({"id": doc.id, "text": doc.text, "metadata": doc.metadata},
                                       option=orjson.OPT_APPEND_NEWLINE))
                yield doc
        finally:
            out.close()


class RecordWriter:
    """One output record per document: id, text, metadata; rejects add reason and location on top."""

    def __init__(self, output_folder: str, gzip_output: bool = True, max_file_bytes: int = MAX_FILE_BYTES):
        self.output_folder, self.gzip_output, self.max_file_bytes = output_folder, gzip_output, max_file_bytes

    def open(self, rank: int) -> JsonlFiles:
        return JsonlFiles(self.output_folder, rank, self.gzip_output, self.max_file_bytes)

    @staticmethod
    def record(document: Document) -> bytes:
        meta = {k: v for k, v in document.metadata.items() if k not in R.REJECT_FIELDS and k != R.FILE_INDEX}
        record = {"id": document.id, "text": document.text}
        if R.is_rejected(document):
            record[R.REASON] = document.metadata[R.REASON]
            record["location"] = R.location(document.metadata)
            record |= {k: document.metadata[k] for k in R.REJECT_FIELDS[1:] if k in document.metadata}
        record["metadata"] = meta
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


# Per-source counters are named "<prefix><source><SEP><what>", parsed back by `per_source`.
SOURCE_PREFIX, SEP = "source:", "\x1f"


def per_source(counters: dict[str, int]) -> dict[str, dict]:
    """{source: {docs_kept, docs_rejected, chars_kept, docs_in, pii: {type: n}}} from the writer's counters."""
    out: dict[str, dict] = {}
    for key, value in counters.items():
        if not key.startswith(SOURCE_PREFIX):
            continue
        source, what = key[len(SOURCE_PREFIX):].split(SEP, 1)
        entry = out.setdefault(source, {"docs_in": 0, "docs_kept": 0, "docs_rejected": 0, "chars_kept": 0, "pii": {}})
        if what.startswith("pii_"):
            entry["pii"][what[4:]] = value
        else:
            entry[what] = value
    for entry in out.values():
        entry["docs_in"] = entry["docs_kept"] + entry["docs_rejected"]
    return dict(sorted(out.items()))


class SplitWriter(CorpusStep):
    """The one place documents leave the stream: kept ones to clean/, rejected ones to rejected/.

    Its counters (kept, rejected, rejected_<reason>, chars_kept, and the same per source
    with PII counts) are the stage's metrics and the basis of the data card.
    """

    type = "💽 - WRITER"
    name = "clean / rejected"

    def __init__(self, clean: RecordWriter, rejected: RecordWriter):
        super().__init__()
        self.clean, self.rejected = clean, rejected

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        clean, rejected = self.clean.open(rank), self.rejected.open(rank)
        try:
            for doc in data:
                with self.track_time():
                    src = f"{SOURCE_PREFIX}{doc.metadata.get('source', 'default')}{SEP}"
                    if R.is_rejected(doc):
                        rejected.write(RecordWriter.record(doc))
                        self.stat_update("rejected", f"rejected_{doc.metadata[R.REASON]}", src + "docs_rejected")
                    else:
                        clean.write(RecordWriter.record(doc))
                        self.stat_update("kept", src + "docs_kept")
                        self.stat_update("chars_kept", src + "chars_kept", value=len(doc.text))
                    for kind, n in (doc.metadata.get("pii") or {}).items():
                        self.stat_update(f"{src}pii_{kind}", value=n)
                yield doc
        finally:
            clean.close()
            rejected.close()
