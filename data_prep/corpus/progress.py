"""Progress of a long corpus pass: documents/s and an ETA, logged every `every` seconds per task.

The ETA is by input bytes (files finished so far against the task's total), which
tracks wall time far better than document counts when files differ in size.
"""

from __future__ import annotations

import os
import time

from datatrove.utils.logging import logger


def _fmt_eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    def __init__(self, rank: int, paths: list[str], every: float = 30.0):
        self.rank, self.every = rank, every
        self.total_bytes = sum(os.path.getsize(p) for p in paths if os.path.exists(p))
        self.files, self.done_files = len(paths), 0
        self.done_bytes = self.docs = 0
        self.start = self.last = time.monotonic()

    def doc(self) -> None:
        self.docs += 1
        if self.docs % 1000 == 0 and time.monotonic() - self.last >= self.every:
            self.log()

    def file_done(self, path: str) -> None:
        self.done_files += 1
        self.done_bytes += os.path.getsize(path) if os.path.exists(path) else 0

    def log(self) -> None:
        self.last = now = time.monotonic()
        elapsed = max(now - self.start, 1e-9)
        eta = ""
        if self.done_bytes and self.total_bytes:
            eta = f", ETA {_fmt_eta(elapsed * (self.total_bytes - self.done_bytes) / self.done_bytes)}"
        logger.info(f"task {self.rank}: {self.docs:,} docs, {self.docs / elapsed:,.0f} docs/s, "
                    f"files {self.done_files}/{self.files}, {self.done_bytes / 2**20:,.0f}/"
                    f"{self.total_bytes / 2**20:,.0f} MiB{eta}")
