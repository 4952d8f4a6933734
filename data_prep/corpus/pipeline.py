"""The corpus pipeline: datatrove passes, parallel per file, then one global pass.

  1. split (tasks=N, workers=W), every step optional but NFC:
       read -> normalise -> PII -> empty/length -> quality -> decontamination
       -> near-dup keys (work/near/) -> work/<task>.jsonl
  2. near (data.dedup.buckets tasks, only with near-dedup): candidate pairs per hash partition,
       checked by the similarity rules -> work/near/pairs/
  3. merge (one task): k-way merge into corpus order -> near dedup (exact copies of what it keeps
       too) -> exact dedup (the rest: texts with an empty key, or near-dedup off) -> clean/ + rejected/

PII runs before any filter so that rejected/ holds no personal data either. The
dedup decisions need the whole corpus in a fixed order to keep "the first"
occurrence, which is why they run after the parallel passes and not inside them; the
expensive parts of near-dedup (signatures, candidate search, similarity checks) run in parallel.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Optional
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

from data_prep.corpus.decontam import HITS, Decontaminate, DecontamSettings
from data_prep.corpus.dedup import ExactDedup
from data_prep.corpus.executors import PeakMemory, Pass, SlurmSettings, StepCounters, run_local, run_slurm
from data_prep.corpus.filters import EmptyTextFilter, LengthFilter
from data_prep.corpus.merge import MergeTaskFiles
from data_prep.corpus.near_dedup import DedupSettings, NearDedup, NearDedupCandidates, NearDedupSignature
from data_prep.corpus.near_dedup.workfiles import NEAR
from data_prep.corpus.normalize import NormalizeSettings, TextNormalizer
from data_prep.corpus.pii import PIISettings, PIIStep
from data_prep.corpus.quality import QualityFilter, QualitySettings
from data_prep.corpus.readers import CorpusReader, InputFile
from data_prep.corpus.writers import RecordWriter, SplitWriter, WorkWriter, per_source

log = logging.getLogger("data_prep.corpus")

CLEAN, REJECTED, WORK, LOGS, STATE = "clean", "rejected", "work", "logs", "state"


class CorpusError(RuntimeError):
    pass


@dataclass
class CorpusSettings:
    """How a corpus is prepared; the recipe's `data` section is this with its inputs on top (kgov_train's
    DataConfig), so these defaults are the recipe's."""

    min_chars: int = 20
    max_chars: int = 2_000_000
    tasks: int = 2  # datatrove tasks (input files are split across them)
    workers: int = 2  # datatrove worker processes (Slurm: array tasks at once)
    compression: Optional[str] = "gzip"  # output files: jsonl.gz, or jsonl when null
    # The blocks, each switchable; their settings are documented where they are implemented.
    normalize: NormalizeSettings = field(default_factory=NormalizeSettings)
    pii: PIISettings = field(default_factory=PIISettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    decontam: DecontamSettings = field(default_factory=DecontamSettings)
    executor: str = "local"  # local: this machine | slurm: datatrove's Slurm executor (array jobs)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    job_name: str = "kgov-data"  # Slurm job name (the data stage sets kgov-<recipe>-data)


@dataclass
class CorpusReport:
    files_in: int
    docs_in: int
    docs_kept: int
    docs_rejected: int
    rejected_by_reason: dict[str, int]
    chars_kept: int
    normalized: dict[str, int]  # documents changed, per rewrite (nfc_changed, squeezed, ...)
    pii_found: dict[str, int]  # personal data replaced, per type
    sources: dict[str, dict]  # per source: licence, weight, documents and characters, PII per type
    licenses: dict[str, dict]  # per licence: sources, documents and characters kept
    tasks: int
    workers: int
    executor: str
    split_seconds: float
    near_seconds: float
    merge_seconds: float
    docs_per_sec: float
    peak_rss_mb: dict[str, float]  # per pass: the largest peak resident memory of one of its task processes
    peak_anon_mb: dict[str, float]  # the same for anonymous memory (without memory-mapped work files)
    near_dedup: dict[str, int]  # the near pass's counters: documents, entries, candidate and similar pairs
    decontam_hits: dict[str, int]  # per eval file: documents whose first eval n-gram match came from it
    rejected_dir: str = field(default="")

    def metrics(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "rejected_dir"}

    def rejects_summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.rejected_by_reason.items()) or "none"


def _counters(stats: StepCounters, step: PipelineStep) -> dict[str, int]:
    """A step's counter totals from a pass's stats."""
    return {k: int(v) for k, v in stats.get(str(step), {}).items()}


def split_steps(inputs: list[InputFile], settings: CorpusSettings, work: Path) -> list[PipelineStep]:
    s = settings
    steps: list[PipelineStep | None] = [
        CorpusReader(inputs),
        TextNormalizer(s.normalize),  # NFC always; the other rewrites as normalize.enabled says
        PIIStep(s.pii) if s.pii.enabled else None,
        EmptyTextFilter(),
        LengthFilter(s.min_chars, s.max_chars),
        QualityFilter(s.quality) if s.quality.enabled else None,
        Decontaminate(s.decontam) if s.decontam.enabled else None,
        NearDedupSignature(s.dedup, work / NEAR) if s.dedup.near else None,
        WorkWriter(str(work)),
        PeakMemory(),
    ]
    return [step for step in steps if step is not None]


def near_steps(settings: CorpusSettings, out_dir: Path) -> list[PipelineStep]:
    return [NearDedupCandidates(settings.dedup, out_dir / WORK / NEAR), PeakMemory()]


def merge_steps(settings: CorpusSettings, out_dir: Path, writer: SplitWriter) -> list[PipelineStep]:
    steps: list[PipelineStep | None] = [
        MergeTaskFiles(str(out_dir / WORK)),
        # near first: an exact copy of a document that near-dedup rejects must name the kept one
        NearDedup(settings.dedup, out_dir / WORK / NEAR) if settings.dedup.near else None,
        ExactDedup(str(out_dir / STATE), settings.dedup.on_disk, empty_keys_only=settings.dedup.near)
        if settings.dedup.exact else None,
        writer,
        PeakMemory(),
    ]
    return [step for step in steps if step is not None]


def prepare_corpus(inputs: list[InputFile], out_dir: Path, settings: CorpusSettings,
                   weights: dict[str, float] | None = None) -> CorpusReport:
    """Turn input files into out_dir/clean and out_dir/rejected; every input record lands in exactly one.

    Raises CorpusError if the counts do not add up. A corpus with nothing kept is
    reported, not raised: the caller decides whether that is fatal.
    """
    if not inputs:
        raise CorpusError("no input files")
    if settings.tasks < 1 or settings.workers < 1:
        raise CorpusError(f"tasks and workers must be >= 1, got tasks={settings.tasks} workers={settings.workers}")
    if settings.executor not in ("local", "slurm"):
        raise CorpusError(f"data.executor: 'local' or 'slurm', got '{settings.executor}'")
    out_dir = Path(out_dir)
    for sub in (CLEAN, REJECTED, WORK, LOGS, STATE):  # a rerun starts clean: no stale files in the outputs
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    tasks = min(settings.tasks, len(inputs))  # a task without files would only add an empty work file

    split = split_steps(inputs, settings, out_dir / WORK)
    gz = settings.compression == "gzip"
    writer = SplitWriter(RecordWriter(str(out_dir / CLEAN), gz), RecordWriter(str(out_dir / REJECTED), gz))
    merge = merge_steps(settings, out_dir, writer)
    passes = [Pass("split", split, tasks, settings.workers)]
    if settings.dedup.near:
        passes.append(Pass(NEAR, near_steps(settings, out_dir), settings.dedup.buckets, settings.workers))
    passes.append(Pass("merge", merge, 1, 1))

    t0, seconds = time.time(), {}
    if settings.executor == "slurm":  # the passes run as chained jobs: only their total is measured here
        stats = run_slurm(passes, out_dir / LOGS, settings.slurm, settings.job_name)
    else:
        stats = []
        for p in passes:
            t = time.time()
            stats += run_local([p], out_dir / LOGS)
            seconds[p.name] = round(time.time() - t, 2)
    wall = time.time() - t0
    by_pass = dict(zip((p.name for p in passes), stats))
    for sub in (CLEAN, REJECTED):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)  # present even when empty
    shutil.rmtree(out_dir / WORK, ignore_errors=True)

    report = _report(inputs, settings, passes, by_pass, writer, tasks, seconds, wall, weights or {})
    report.rejected_dir = str(out_dir / REJECTED)
    # The stage's core promise: every record read is either kept or rejected with a reason.
    if report.docs_in != report.docs_kept + report.docs_rejected or report.files_in != len(inputs):
        raise CorpusError(
            f"accounting mismatch: read {report.docs_in} records from {report.files_in}/{len(inputs)} files, "
            f"but kept {report.docs_kept} + rejected {report.docs_rejected}; see {out_dir / LOGS}")
    log.info("corpus: %d files, %d records in; kept %d (%d chars), rejected %d (%s); %.0f docs/s",
             report.files_in, report.docs_in, report.docs_kept, report.chars_kept, report.docs_rejected,
             report.rejects_summary(), report.docs_per_sec)
    return report


def _peaks(passes: list[Pass], by_pass: dict[str, StepCounters], key: str) -> dict[str, float]:
    return {p.name: round(_counters(by_pass[p.name], p.pipeline[-1]).get(key, 0) / 1024, 1) for p in passes}


def _report(inputs: list[InputFile], settings: CorpusSettings, passes: list[Pass], by_pass: dict[str, StepCounters],
            writer: SplitWriter, tasks: int, seconds: dict[str, float], wall: float,
            weights: dict[str, float]) -> CorpusReport:
    split, split_stats, merge_stats = passes[0].pipeline, by_pass["split"], by_pass["merge"]
    read, written = _counters(split_stats, split[0]), _counters(merge_stats, writer)
    normalized = {k: v for k, v in _counters(split_stats, split[1]).items() if k != "normalized"}
    pii = next((_counters(split_stats, s) for s in split if isinstance(s, PIIStep)), {})
    by_reason = {k.removeprefix("rejected_"): v for k, v in sorted(written.items()) if k.startswith("rejected_")}

    license_of = {i.source: i.license for i in inputs}
    sources = per_source(written)
    for name, entry in sources.items():
        entry["license"], entry["weight"] = license_of.get(name, "unknown"), weights.get(name, 1.0)
        entry["files"] = sum(1 for i in inputs if i.source == name)
    licenses: dict[str, dict] = {}
    for name, entry in sources.items():
        lic = licenses.setdefault(entry["license"], {"sources": [], "docs_kept": 0, "chars_kept": 0})
        lic["sources"].append(name)
        lic["docs_kept"] += entry["docs_kept"]
        lic["chars_kept"] += entry["chars_kept"]
    docs_in = read.get("records_in", 0)
    near = _counters(by_pass[NEAR], passes[1].pipeline[0]) if NEAR in by_pass else {}
    decontam = next((_counters(split_stats, s) for s in split if isinstance(s, Decontaminate)), {})
    return CorpusReport(
        files_in=read.get("input_files", 0), docs_in=docs_in,
        docs_kept=written.get("kept", 0), docs_rejected=written.get("rejected", 0),
        rejected_by_reason=by_reason, chars_kept=written.get("chars_kept", 0), normalized=normalized,
        pii_found={k.removeprefix("pii_"): v for k, v in sorted(pii.items()) if k.startswith("pii_")},
        sources=sources, licenses=dict(sorted(licenses.items())),
        tasks=tasks, workers=min(settings.workers, tasks), executor=settings.executor,
        split_seconds=seconds.get("split", 0.0), near_seconds=seconds.get(NEAR, 0.0),
        merge_seconds=seconds.get("merge", 0.0), docs_per_sec=round(docs_in / max(wall, 1e-9), 1),
        peak_rss_mb=_peaks(passes, by_pass, PeakMemory.KEY), peak_anon_mb=_peaks(passes, by_pass, PeakMemory.ANON),
        near_dedup=near,
        decontam_hits={k.removeprefix(HITS): v for k, v in sorted(decontam.items()) if k.startswith(HITS)},
    )
