"""The raw texts the eval stage scores in bits per byte (kgov_train.evaluation.bits_per_byte), as named sets of
documents:

    heldout:<source>   the run's held-out corpus text (routes with shards): the data stage's clean documents that the
                       shards stage put in its validation split, per data source
    <file stem>        each file of eval.text_files: .txt (one document per blank-line-separated paragraph) or .jsonl
                       (one document per line, key "text")
    <stage>:validation the validation records of a chat stage (routes without shards; see chat_record_text)

Held-out text is read back from data/clean, not decoded from the shards' token ids (which would depend on the
tokenizer): a document is in the validation split iff id_hash(id) < the cutoff of its source that the shards
stage recorded in index.json (split_rule.cutoffs), the very test the shards writer applied
(data_prep.shards.encode.encode); the documents found are counted against index.json's validation counts, so
clean files changed since the shards were cut fail instead of being scored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from data_prep.hashing import id_hash
from data_prep.shards.read import load_index
from data_prep.tokenizer.corpus import clean_files, iter_records

TEXT_SUFFIXES = (".txt", ".jsonl")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")


class TextsError(ValueError):
    pass


def cap_bytes(documents: Iterable[str], max_bytes: int) -> list[str]:
    """Whole documents, in order, until they hold max_bytes UTF-8 bytes (the last one may go past it)."""
    out, total = [], 0
    for doc in documents:
        if total >= max_bytes:
            break
        out.append(doc)
        total += len(doc.encode("utf-8"))
    return out


def jsonl_records(path: Path, key: str, error: type[Exception]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of each non-blank line of a JSONL file; a line that is not a JSON object with a string
    `key` raises `error` naming the file, the line and the key."""
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{path}:{n}: not JSON ({e})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get(key), str):
            raise error(f"{path}:{n}: a record needs a string '{key}'")
        yield n, rec


def read_text_file(path: Path) -> list[str]:
    """The documents of a .txt (blank-line-separated paragraphs, stripped) or .jsonl ("text" per line) file."""
    path = Path(path)
    if not path.is_file():
        raise TextsError(f"{path}: eval.text_files entry missing")
    if path.suffix == ".txt":
        docs = [p.strip() for p in _PARAGRAPH.split(path.read_text(encoding="utf-8").replace("\r\n", "\n"))]
    elif path.suffix == ".jsonl":
        docs = [rec["text"] for _, rec in jsonl_records(path, "text", TextsError)]
    else:
        raise TextsError(f"{path}: eval.text_files takes .txt or .jsonl files, got '{path.suffix}'")
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise TextsError(f"{path}: no text")
    return docs


def text_file_problems(files: list[str]) -> list[str]:
    """eval.text_files problems: missing files, other suffixes, two files with one stem (the set's name)."""
    errors, stems = [], {}
    for f in files:
        p = Path(f)
        if p.suffix not in TEXT_SUFFIXES:
            errors.append(f"eval.text_files: {p} is not a .txt or .jsonl file")
        elif not p.is_file():
            errors.append(f"eval.text_files: {p} does not exist")
        if p.stem in stems:
            errors.append(f"eval.text_files: {stems[p.stem]} and {p} have the same name '{p.stem}' (the set's name)")
        stems[p.stem] = p
    return errors


def text_file_sets(files: list[str], max_bytes: int) -> dict[str, list[str]]:
    return {Path(f).stem: cap_bytes(read_text_file(Path(f)), max_bytes) for f in files}


def heldout_sets(shards_dir: Path, clean_dir: Path, max_bytes: int) -> dict[str, list[str]]:
    """{"heldout:<source>": the source's validation documents in corpus order, capped at max_bytes}."""
    index = load_index(shards_dir)
    cutoffs = {name: int(c["cutoff"]) for name, c in index["split_rule"]["cutoffs"].items()}
    docs: dict[str, list[str]] = {}
    found: dict[str, int] = {}
    for doc_id, text, source in iter_records(clean_files(clean_dir)):
        if source not in cutoffs:
            raise TextsError(f"{clean_dir}: source '{source}' is not in {Path(shards_dir) / 'index.json'}; the clean "
                             "documents changed since the shards were cut (rerun the shards stage)")
        if id_hash(doc_id) < cutoffs[source]:
            found[source] = found.get(source, 0) + 1
            docs.setdefault(source, []).append(text)
    expected = {n: int(s["documents"]) for n, s in index["splits"]["validation"]["sources"].items()}
    if {n: c for n, c in expected.items() if c} != found:
        raise TextsError(f"{clean_dir}: validation documents per source {found}, but {Path(shards_dir) / 'index.json'} "
                         f"says {expected}; the clean documents changed since the shards were cut")
    return {f"heldout:{name}": cap_bytes(d, max_bytes) for name, d in sorted(docs.items())}


def _content(messages: Any) -> list[str]:
    if isinstance(messages, str):
        return [messages]
    return [m["content"] for m in messages or [] if isinstance(m, dict) and isinstance(m.get("content"), str)]


def chat_record_text(record: dict[str, Any]) -> str:
    """A chat record's raw text, without any chat template (templates are tokenizer-specific): the contents of its
    messages ({"messages"}: SFT) or of its prompt and chosen answer ({"prompt", "chosen", "rejected"}: DPO), joined
    by blank lines."""
    if "messages" in record:
        parts = _content(record["messages"])
    else:
        parts = _content(record.get("prompt")) + _content(record.get("chosen"))
    return "\n\n".join(p.strip() for p in parts if p.strip())
