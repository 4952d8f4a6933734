"""The corpus pipeline: two datatrove runs, parallel per file, then one global pass.

  1. split (tasks=N, workers=W): read -> NFC -> empty/length filters -> work/<task>.jsonl
  2. merge (one task): k-way merge into corpus order -> exact dedup -> clean/ + rejected/

Exact dedup has to see the whole corpus in a fixed order to keep "the first"
occurrence, which is why it runs after the parallel pass and not inside it.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats

from data_prep.corpus.dedup import ExactDedup
from data_prep.corpus.filters import EmptyTextFilter, LengthFilter
from data_prep.corpus.merge import MergeTaskFiles
from data_prep.corpus.normalize import NFCNormalizer
from data_prep.corpus.readers import CorpusReader
from data_prep.corpus.writers import RecordWriter, SplitWriter, WorkWriter

log = logging.getLogger("data_prep.corpus")

CLEAN, REJECTED, WORK, LOGS = "clean", "rejected", "work", "logs"


class CorpusError(RuntimeError):
    pass


@dataclass
class CorpusSettings:
    text_key: str = "text"
    id_key: str = "id"
    source: str = "default"
    license: str = "unknown"
    min_chars: int = 20
    max_chars: int = 2_000_000
    tasks: int = 2
    workers: int = 2
    compression: str | None = "gzip"  # gzip | None


@dataclass
class CorpusReport:
    files_in: int
    docs_in: int
    docs_kept: int
    docs_rejected: int
    rejected_by_reason: dict[str, int]
    chars_kept: int
    nfc_changed: int
    tasks: int
    workers: int
    split_seconds: float
    merge_seconds: float
    rejected_dir: str = field(default="")

    def metrics(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "rejected_dir"}

    def rejects_summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.rejected_by_reason.items()) or "none"


def _counters(stats: PipelineStats | None, step: PipelineStep) -> dict[str, int]:
    """A step's counters from the executor's merged stats (one entry per step, in pipeline order)."""
    for s in (stats.stats if stats else []):
        if s.name == str(step):
            return {k: int(v.total) for k, v in s.stats.items()}
    return {}


def _executor(pipeline: list[PipelineStep], tasks: int, workers: int, logs: Path) -> LocalPipelineExecutor:
    # fork: workers inherit the loaded modules, so no `if __name__ == "__main__"` guard is needed
    # in whatever started us (the kgov-train CLI, pytest); skip_completed=False: we always
    # start from empty folders, so stale completion markers must not skip a task.
    return LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(workers, tasks), logging_dir=str(logs),
                                 skip_completed=False, start_method="fork")


def prepare_corpus(files: list[Path], out_dir: Path, settings: CorpusSettings) -> CorpusReport:
    """Turn input files into out_dir/clean and out_dir/rejected; every input record lands in exactly one.

    Raises CorpusError if the counts do not add up. A corpus with nothing kept is
    reported, not raised: the caller decides whether that is fatal.
    """
    if not files:
        raise CorpusError("no input files")
    if settings.tasks < 1 or settings.workers < 1:
        raise CorpusError(f"tasks and workers must be >= 1, got tasks={settings.tasks} workers={settings.workers}")
    out_dir = Path(out_dir)
    for sub in (CLEAN, REJECTED, WORK, LOGS):  # a rerun starts clean: no stale files in the outputs
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    tasks = min(settings.tasks, len(files))  # a task without files would only add an empty work file

    reader = CorpusReader.from_paths([str(f) for f in files], settings.source, settings.license,
                                     settings.text_key, settings.id_key)
    normalizer = NFCNormalizer()
    split = [reader, normalizer, EmptyTextFilter(), LengthFilter(settings.min_chars, settings.max_chars),
             WorkWriter(str(out_dir / WORK))]
    t0 = time.time()
    split_stats = _executor(split, tasks, settings.workers, out_dir / LOGS / "split").run()
    t1 = time.time()

    gz = settings.compression == "gzip"
    writer = SplitWriter(RecordWriter(str(out_dir / CLEAN), gz), RecordWriter(str(out_dir / REJECTED), gz))
    merge = [MergeTaskFiles(str(out_dir / WORK)), ExactDedup(), writer]
    merge_stats = _executor(merge, 1, 1, out_dir / LOGS / "merge").run()
    t2 = time.time()
    for sub in (CLEAN, REJECTED):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)  # present even when empty
    shutil.rmtree(out_dir / WORK, ignore_errors=True)

    read, written = _counters(split_stats, reader), _counters(merge_stats, writer)
    by_reason = {k.removeprefix("rejected_"): v for k, v in sorted(written.items()) if k.startswith("rejected_")}
    report = CorpusReport(
        files_in=read.get("input_files", 0), docs_in=read.get("records_in", 0),
        docs_kept=written.get("kept", 0), docs_rejected=written.get("rejected", 0),
        rejected_by_reason=by_reason, chars_kept=written.get("chars_kept", 0),
        nfc_changed=_counters(split_stats, normalizer).get("nfc_changed", 0),
        tasks=tasks, workers=min(settings.workers, tasks),
        split_seconds=round(t1 - t0, 2), merge_seconds=round(t2 - t1, 2), rejected_dir=str(out_dir / REJECTED),
    )
    # The stage's core promise: every record read is either kept or rejected with a reason.
    if report.docs_in != report.docs_kept + report.docs_rejected or report.files_in != len(files):
        raise CorpusError(
            f"accounting mismatch: read {report.docs_in} records from {report.files_in}/{len(files)} files, "
            f"but kept {report.docs_kept} + rejected {report.docs_rejected}; see {out_dir / LOGS}")
    log.info("corpus: %d files, %d records in; kept %d (%d chars), rejected %d (%s); NFC changed %d",
             report.files_in, report.docs_in, report.docs_kept, report.chars_kept, report.docs_rejected,
             report.rejects_summary(), report.nfc_changed)
    return report
