"""Read the data stage's output: `<run>/data/clean/*.jsonl[.gz]`, one JSON object per line
(`{"id": str, "text": str, "metadata": {...}}`), files in sorted name order."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO, Iterable, Iterator

import orjson


class CorpusError(ValueError):
    pass


def clean_files(clean_dir: Path) -> list[Path]:
    """Every .jsonl / .jsonl.gz below `clean_dir`, sorted by relative path (the corpus order)."""
    clean_dir = Path(clean_dir)
    if not clean_dir.is_dir():
        raise CorpusError(f"{clean_dir}: no such folder; the data stage writes its documents there")
    files = sorted((p for p in clean_dir.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz"))),
                   key=lambda p: str(p.relative_to(clean_dir)))
    if not files:
        raise CorpusError(f"{clean_dir}: no *.jsonl or *.jsonl.gz files; did the data stage keep any document?")
    return files


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def parse_record(path, lineno: int, raw: bytes) -> tuple[str, str, str] | None:
    """(id, text, source) of one data/clean line, None for a blank one; a malformed one is an error naming
    file, line and key. The one parser of data/clean, for the tokenizer and the shards alike."""
    if not raw.strip():
        return None
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise CorpusError(f"{path}:{lineno}: not valid JSON ({e})") from None
    if not isinstance(rec, dict) or "id" not in rec or "text" not in rec:
        got = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
        raise CorpusError(f"{path}:{lineno}: a document record needs keys 'id' and 'text', got {got}")
    if not isinstance(rec["text"], str):
        raise CorpusError(f"{path}:{lineno}: key 'text' is {type(rec['text']).__name__}, not a string")
    meta = rec.get("metadata")
    source = meta.get("source", "default") if isinstance(meta, dict) else "default"
    if not isinstance(source, str):
        raise CorpusError(f"{path}:{lineno}: key 'metadata.source' is {type(source).__name__}, not a string")
    return str(rec["id"]), rec["text"], source


def iter_records(files: Iterable[Path]) -> Iterator[tuple[str, str, str]]:
    """(id, text, source) per document, in corpus order."""
    for path in files:
        with _open(path) as f:
            for lineno, raw in enumerate(f, start=1):
                rec = parse_record(path, lineno, raw)
                if rec is not None:
                    yield rec


def iter_documents(files: Iterable[Path]) -> Iterator[tuple[str, str]]:
    """(id, text) per document, in corpus order."""
    for doc_id, text, _ in iter_records(files):
        yield doc_id, text
