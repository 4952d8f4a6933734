"""Rejected records, counted and kept: `<stage_dir>/rejects/rejected.jsonl`, one JSON line each:

    {"dataset", "file", "line" (jsonl, 1-based) or "row" (json/parquet, 0-based), "reason",
     "record": the record as read (for prompt_too_long / too_long: as converted, with "tokens"),
     or "raw": the line as text when it is not JSON, "detail": the parser's message}

Lines are written as records are rejected (nothing is held in memory) to a temporary file that replaces the rejects
file when loading ends, also when it fails: every process of a run may load the data, and each replaces the file
with the same bytes. The first few rejections are logged with file:line.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from kgov_train.chat.readers import Origin

log = logging.getLogger("kgov_train")

FILE = Path("rejects") / "rejected.jsonl"
WARNINGS = 5
_UNSET = object()


class Rejects:
    def __init__(self, stage_dir: Path, label: str):
        self.path = Path(stage_dir) / FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a unique temporary name: every process of a run (on every node, shared file system) writes its own
        self._f = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=self.path.parent, prefix=f".{self.path.name}.",
                                              suffix=".tmp", delete=False)
        self._tmp = Path(self._f.name)
        self.label = label  # e.g. "sft", for the log
        self.by_dataset: dict[str, Counter[str]] = defaultdict(Counter)
        self.total = 0

    def add(self, origin: Origin, reason: str, record: Any = _UNSET, raw: str | None = None,
            detail: str | None = None, **extra: Any) -> None:
        line = {**origin.fields(), "reason": reason, **extra}
        if record is not _UNSET:
            line["record"] = record
        if raw is not None or record is _UNSET:
            line["raw"] = raw
        if detail:
            line["detail"] = detail
        self._f.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self.by_dataset[origin.dataset][reason] += 1
        self.total += 1
        if self.total <= WARNINGS:
            log.warning("%s: %s rejected (%s)%s", self.label, origin.where(), reason,
                        "; the rest are counted in the stage's metrics and kept in " + str(self.path)
                        if self.total == WARNINGS else "")

    def close(self) -> Path:
        if not self._f.closed:
            self._f.close()
            os.replace(self._tmp, self.path)
        return self.path
