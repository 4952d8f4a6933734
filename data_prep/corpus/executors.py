"""Run the corpus passes on this machine (LocalPipelineExecutor) or on Slurm (SlurmPipelineExecutor).

Both executors leave per-task stats in <logs>/<pass>/stats/NNNNN.json and a completion
marker per task; the stage reads its counts from those files, so its figures are the
same whichever executor ran it. On Slurm the passes become chained array jobs and this
process waits for the last one, so the stage still seals its manifest when it returns.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from datatrove.executor import LocalPipelineExecutor
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from data_prep.corpus import memory
from data_prep.corpus.step import CorpusStep

log = logging.getLogger("data_prep.corpus")
_MAX = "max_"  # a counter named max_* is the largest value over a pass's tasks, not their sum


class ExecutorError(RuntimeError):
    pass


@dataclass
class SlurmSettings:
    """`data.slurm`: datatrove's Slurm executor, used when data.executor=slurm."""

    partition: Optional[str] = None  # null: the cluster profile's cpu_partition
    time: str = "24:00:00"  # per array task
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    qos: Optional[str] = None
    max_array_size: int = 1001  # the cluster's MaxArraySize; more tasks become several array jobs
    poll_seconds: float = 10.0  # how often the stage checks its jobs
    sbatch_args: Dict[str, str] = field(default_factory=dict)  # extra #SBATCH options, e.g. {account: x}


@dataclass
class Pass:
    name: str  # folder under logs/
    pipeline: List[PipelineStep]
    tasks: int
    workers: int


StepCounters = Dict[str, Dict[str, float]]  # step name -> counter -> total over all tasks (max_*: largest)


class PeakMemory(CorpusStep):
    """Last step of every pass: passes documents on, then records its task process's peak resident and
    peak anonymous memory (KiB; see memory.py; on Linux a forked worker's RSS includes what it shares
    with the process that started it)."""

    type = "📏 - MEASURE"
    name = "peak memory"
    KEY, ANON = _MAX + "rss_kib", _MAX + "anon_kib"
    _EVERY = 4096  # documents between samples of the anonymous memory

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is not None:
            for n, doc in enumerate(data, 1):
                if n % self._EVERY == 0:
                    memory.sample()
                yield doc
        self.stat_update(self.KEY, value=memory.peak_rss_kib())
        self.stat_update(self.ANON, value=memory.peak_anon_kib())


def read_stats(logs: Path) -> StepCounters:
    """Counter totals per step, summed over the per-task stats files a pass left (both executors write them).

    Read from the JSON directly: a counter seen once is stored as a bare number, more often as a
    dict with its total, and datatrove's own from_json does not turn either back into MetricStats.
    """
    total: StepCounters = {}
    for f in sorted((logs / "stats").glob("*.json")):
        for step in json.loads(f.read_text()):
            counters = total.setdefault(step["name"], {})
            for key, value in step.get("stats", {}).items():
                n = value.get("total", 0) if isinstance(value, dict) else value
                counters[key] = max(counters.get(key, 0), n) if key.startswith(_MAX) else counters.get(key, 0) + n
    return total


def run_local(passes: list[Pass], logs: Path) -> list[StepCounters]:
    out = []
    for p in passes:
        memory.reset()  # with one worker the tasks run in this process: each pass's peak on its own
        # fork: workers inherit the loaded modules, so whatever started us (the CLI, pytest) needs no
        # `if __name__ == "__main__"` guard; skip_completed=False: folders start empty, stale markers must not skip.
        LocalPipelineExecutor(p.pipeline, tasks=p.tasks, workers=min(p.workers, p.tasks), logging_dir=str(logs / p.name),
                              skip_completed=False, start_method="fork").run()
        out.append(read_stats(logs / p.name))
    return out


def run_slurm(passes: list[Pass], logs: Path, slurm: SlurmSettings, job_name: str) -> list[StepCounters]:
    from datatrove.executor import SlurmPipelineExecutor

    if not slurm.partition:
        raise ExecutorError("data.slurm.partition: not set (nor cluster.cpu_partition); name the Slurm partition")
    venv = Path(sys.prefix) / "bin" / "activate"
    executors: list[SlurmPipelineExecutor] = []
    for p in passes:
        sbatch_args = dict(slurm.sbatch_args)
        if executors:  # a later pass whose predecessor failed is cancelled instead of pending forever
            sbatch_args["kill-on-invalid-dep"] = "yes"
        executors.append(SlurmPipelineExecutor(
            p.pipeline, tasks=p.tasks, workers=p.workers, time=slurm.time, partition=slurm.partition,
            cpus_per_task=slurm.cpus_per_task, mem_per_cpu_gb=slurm.mem_per_cpu_gb, qos=slurm.qos or "",
            job_name=f"{job_name}-{p.name}", logging_dir=str(logs / p.name), skip_completed=False,
            venv_path=str(venv) if venv.exists() else None, sbatch_args=sbatch_args,
            max_array_size=slurm.max_array_size, depends=executors[-1] if executors else None,
            mail_type="NONE", requeue=False,
        ))
    last = executors[-1]
    last.run()  # submits the chain: each executor launches the one it depends on first
    ids = [e.job_id for e in executors]
    log.info("data stage submitted to Slurm as jobs %s (logs under %s)", ", ".join(map(str, ids)), logs)
    _wait(logs / passes[-1].name, passes[-1].tasks, ids, slurm.poll_seconds)
    return [read_stats(logs / p.name) for p in passes]


def _wait(pass_logs: Path, tasks: int, job_ids: list, poll: float) -> None:
    """Until every task of the last pass left its completion marker, or its jobs are gone without them."""
    started = time.time()
    while True:
        done = len(list((pass_logs / "completions").glob("*"))) if (pass_logs / "completions").is_dir() else 0
        if done >= tasks:
            return
        alive = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(map(str, job_ids))],
                               capture_output=True, text=True)
        # Finished jobs drop out of squeue (or it calls their ids invalid once purged); other errors are transient.
        gone = (alive.returncode == 0 and not alive.stdout.strip()) or "Invalid job id" in alive.stderr
        if gone:
            time.sleep(min(poll, 2))  # the markers of a task that just ended may still be landing
            done = len(list((pass_logs / "completions").glob("*"))) if (pass_logs / "completions").is_dir() else 0
            if done >= tasks:
                return
            raise ExecutorError(f"Slurm jobs {job_ids} ended with {done}/{tasks} tasks of the last pass complete; "
                                f"see the job logs under {pass_logs.parent}")
        log.info("waiting for Slurm jobs %s: %d/%d final tasks done, %.0fs", job_ids, done, tasks,
                 time.time() - started)
        time.sleep(poll)
