"""Writers: per-task work files, and the final clean/ and rejected/ files.

The final files are byte-for-byte reproducible: the same corpus and settings give
the same sha256 whatever tasks/workers were used, so downstream stages that key on
input hashes are not rerun for nothing.
"""

from __future__ import annotations

import gzip
from typing import IO

from datatrove.data import Document, DocumentsPipeline
from datatrove.io import OutputFileManager
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.jsonl import JsonlWriter

from data_prep.corpus import records as R

# Final files are split at this many uncompressed bytes, so later stages can read them in parallel.
MAX_FILE_BYTES = 256 * 1024 * 1024
# The merge that writes the final files is one process: on Korean text level 1 compresses ~3x faster than
# zlib's default 6, for files ~25% larger (Python's gzip default, 9, is slower still).
_GZIP_LEVEL = 1


class WorkWriter(JsonlWriter):
    """Per-task intermediate records, uncompressed (they live minutes), every field kept.

    datatrove's default adapter drops falsy values, which would lose an empty text.
    """

    name = "kgov work records"

    def __init__(self, output_folder: str):
        super().__init__(output_folder, output_filename="${rank}.jsonl", compression=None)

    def _default_adapter(self, document: Document) -> dict:
        return {"id": document.id, "text": document.text, "metadata": document.metadata}


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


class _ReproducibleGzipFiles(OutputFileManager):
    def get_file(self, filename):
        if filename not in self._output_files:
            self._output_files[filename] = _ReproducibleGzip(self.fs.open(filename, mode="wb"))
        return self._output_files[filename]


class RecordWriter(JsonlWriter):
    """One output record per document: id, text, metadata; rejects add reason and location on top."""

    name = "kgov corpus records"

    def __init__(self, output_folder: str, gzip_output: bool = True, max_file_bytes: int = MAX_FILE_BYTES):
        # compression=None: with gzip_output the reproducible gzip files below replace datatrove's
        super().__init__(output_folder, output_filename="${rank}.jsonl" + (".gz" if gzip_output else ""),
                         compression=None, max_file_size=max_file_bytes)
        if gzip_output:
            self.output_mg = _ReproducibleGzipFiles(self.output_folder, mode="wb")

    def _default_adapter(self, document: Document) -> dict:
        meta = {k: v for k, v in document.metadata.items() if k not in R.REJECT_FIELDS and k != R.FILE_INDEX}
        record = {"id": document.id, "text": document.text}
        if R.is_rejected(document):
            record[R.REASON] = document.metadata[R.REASON]
            record["location"] = R.location(document.metadata)
            record |= {k: document.metadata[k] for k in R.REJECT_FIELDS[1:] if k in document.metadata}
        record["metadata"] = meta
        return record


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


class SplitWriter(PipelineStep):
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
        with self.clean, self.rejected:
            for doc in data:
                with self.track_time():
                    src = f"{SOURCE_PREFIX}{doc.metadata.get('source', 'default')}{SEP}"
                    if R.is_rejected(doc):
                        self.rejected.write(doc, rank)
                        self.stat_update("rejected", f"rejected_{doc.metadata[R.REASON]}", src + "docs_rejected")
                    else:
                        self.clean.write(doc, rank)
                        self.stat_update("kept", src + "docs_kept")
                        self.stat_update("chars_kept", src + "chars_kept", value=len(doc.text))
                    for kind, n in (doc.metadata.get("pii") or {}).items():
                        self.stat_update(f"{src}pii_{kind}", value=n)
                yield doc
