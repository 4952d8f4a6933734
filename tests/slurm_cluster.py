"""A real Slurm cluster on this machine for tests: the `slurm_cluster` and `slurm_cluster_2nodes` fixtures,
`sbatch` and `wait_for_job`.

`slurm_cluster` runs `scripts/dev_slurm_cluster.sh up` once per session (the first time on a
machine it apt-installs slurm-wlm and munge, ~20 s): one node, or the cluster already up (a
two-node one too). It exports SLURM_CONF for the session and stops the cluster again at the end
if it was this session that started it (KGOV_SLURM_KEEP=1 leaves it running).

`slurm_cluster_2nodes` (module scope) needs two nodes, each slurmd in its own network and UTS
namespace (`--nodes 2 up`, a few seconds): a one-node cluster that is up (the session's, or one
started by hand, if it has no jobs) is taken down for the module and brought up again after it.

KGOV_SLURM_TESTS: "0" skips every test that uses the fixture; "1" makes a cluster that
cannot be brought up a test failure instead of a skip; unset: try, and skip with the
reason when it cannot be had (not root, no apt, `up` failed).

Use: `from tests.slurm_cluster import slurm_cluster, sbatch, wait_for_job` in a test module
marked `pytest.mark.slurm`. The marker is registered by `pytest_configure` below when this
module is loaded as a plugin (`-p tests.slurm_cluster`); otherwise it belongs in pyproject's
[tool.pytest.ini_options] markers.

No slurmdbd here, so no `sacct`: final states come from `scontrol show job` (which remembers
a job MinJobAge=600 s after it ends) and then from the jobcomp/filetxt file the script
configures; `sacct` is tried last, for clusters that have accounting.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "dev_slurm_cluster.sh"
UP_TIMEOUT_S = 900  # apt-get install on a new machine
DEFAULT_CONF = Path(os.environ.get("KGOV_SLURM_ROOT", "/var/lib/kgov-slurm")) / "etc" / "slurm.conf"

# Job states after which a job never runs again (squeue/scontrol spelling).
TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT",
})
# Not a Slurm state: returned for a job left PENDING because its dependency can never be
# satisfied (afterok on a failed job, without --kill-on-invalid-dep=yes). It would wait forever.
NEVER_SATISFIED = "DependencyNeverSatisfied"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slurm: runs jobs on a real local Slurm cluster (scripts/dev_slurm_cluster.sh)")


@dataclass(frozen=True)
class SlurmCluster:
    conf: Path  # SLURM_CONF
    jobcomp: Path  # one line per finished job: JobId=.. JobState=..
    logdir: Path
    nodes: tuple[str, ...]
    started_here: bool
    ifname: str = ""  # two nodes and more: the interface every node has on the nodes' bridge (kgov0)


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdin=subprocess.DEVNULL)


def _unavailable(reason: str) -> None:
    if os.environ.get("KGOV_SLURM_TESTS") == "1":
        pytest.fail(f"KGOV_SLURM_TESTS=1 but no Slurm cluster: {reason}", pytrace=False)
    pytest.skip(reason)


def _preflight() -> None:
    if os.environ.get("KGOV_SLURM_TESTS") == "0":
        pytest.skip("KGOV_SLURM_TESTS=0")
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        _unavailable("the dev Slurm cluster needs root (apt-get install, daemons): run as root")
    if shutil.which("bash") is None:
        _unavailable("no bash")


def _up(*args: str) -> tuple[bool, str]:
    """`scripts/dev_slurm_cluster.sh [args] up` -> (started here, ""), or (False, why not) when it failed."""
    cmd = " ".join(("scripts/dev_slurm_cluster.sh", *args, "up"))
    try:
        res = _script(*args, "up", timeout=UP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, f"{cmd} took more than {UP_TIMEOUT_S}s"
    if res.returncode != 0:
        lines = (res.stderr.strip() or res.stdout.strip() or f"exit {res.returncode}").splitlines()
        error = next((line for line in reversed(lines) if "ERROR" in line), lines[-1])
        log_tail = [line for line in lines if "ERROR" not in line][-4:]  # slurmd's / slurmctld's last words
        return False, f"{cmd} failed: {error} | last log lines: " + " | ".join(log_tail)
    return "already up" not in res.stdout, ""


def _cluster(started_here: bool) -> SlurmCluster:
    env = dict(line.split("=", 1) for line in _script("env", timeout=30).stdout.splitlines() if "=" in line)
    return SlurmCluster(conf=Path(env["SLURM_CONF"]), jobcomp=Path(env["KGOV_SLURM_JOBCOMP"]),
                        logdir=Path(env["KGOV_SLURM_LOGDIR"]), nodes=tuple(env["KGOV_SLURM_NODES"].split()),
                        started_here=started_here, ifname=env.get("KGOV_SLURM_IFNAME", ""))


def _running() -> SlurmCluster | None:
    """The dev cluster if its slurmctld answers now, else None."""
    return _cluster(False) if _script("status", timeout=60).returncode == 0 else None


@contextlib.contextmanager
def _client_env(cluster: SlurmCluster):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", str(cluster.conf))  # for sbatch/squeue run by the code under test too
        mp.setenv("KGOV_SLURM_JOBCOMP", str(cluster.jobcomp))
        yield cluster


@pytest.fixture(scope="session")
def slurm_cluster():
    _preflight()
    started_here, error = _up()
    if error:
        _unavailable(error)
    with _client_env(_cluster(started_here)) as cluster:
        yield cluster
    if started_here and os.environ.get("KGOV_SLURM_KEEP") != "1":
        _script("down", timeout=120)


@pytest.fixture(scope="module")
def slurm_cluster_2nodes():
    """Two nodes, kgov-n1 and kgov-n2, each slurmd in its own network and UTS namespace (`--nodes 2 up`). A cluster of
    another size that is up is taken down for the module and brought back after it.

    Skips with the script's reason where they cannot be had (no CAP_NET_ADMIN, no bridge/veth support, ...)."""
    _preflight()
    before = _running()
    if before is not None and len(before.nodes) == 2:  # already there (KGOV_SLURM_KEEP=1, or by hand)
        with _client_env(before) as cluster:
            yield cluster
        return
    if before is not None:
        jobs = slurm("squeue", "-h", "-o", "%A", check=False).stdout.split()
        if jobs:
            _unavailable(f"a {len(before.nodes)}-node dev cluster is up with jobs {' '.join(jobs)}: "
                         "the two-node tests would cancel them")
        _script("down", timeout=120)
    started_here, error = _up("--nodes", "2")
    if error:
        if before is not None:
            _up("--nodes", str(len(before.nodes)))  # give the session back its cluster
        _unavailable(error)
    try:
        with _client_env(_cluster(started_here)) as cluster:
            yield cluster
    finally:
        if before is not None or os.environ.get("KGOV_SLURM_KEEP") != "1":
            _script("down", timeout=120)
        if before is not None:
            _, error = _up("--nodes", str(len(before.nodes)))
            assert not error, f"could not bring the {len(before.nodes)}-node dev cluster back: {error}"


def _slurm_env() -> dict[str, str]:
    env = dict(os.environ)
    if "SLURM_CONF" not in env and DEFAULT_CONF.exists():
        env["SLURM_CONF"] = str(DEFAULT_CONF)
    return env


def slurm(*args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a Slurm client command against the dev cluster."""
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=_slurm_env())
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def sbatch(*args: str) -> str:
    """`sbatch --parsable ARGS`; returns the job id."""
    return slurm("sbatch", "--parsable", *args).stdout.strip().split(";")[0]


def _scontrol_records(job_id: str) -> list[dict[str, str]] | None:
    """Records of `scontrol show job -o` (several for an array); None once Slurm has forgotten the job."""
    res = slurm("scontrol", "show", "job", "-o", job_id, check=False)
    if res.returncode != 0:
        if "Invalid job id" in res.stderr:
            return None
        raise RuntimeError(f"scontrol show job {job_id}: {res.stderr.strip()}")
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in res.stdout.splitlines() if line.strip()]


def _jobcomp_state(job_id: str, jobcomp: Path) -> str | None:
    """Last state the jobcomp file recorded for JOB or ARRAYJOB_TASK (None if absent)."""
    try:
        text = jobcomp.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if "_" in job_id:
        array_id, task = job_id.split("_", 1)
        want = {"ArrayJobId": array_id, "ArrayTaskId": task}
    else:
        want = {"JobId": job_id}
    state = None
    for line in text.splitlines():
        rec = dict(re.findall(r"(\w+)=(\S*)", line))
        if all(rec.get(k) == v for k, v in want.items()):
            state = rec.get("JobState")
    return state


def _sacct_state(job_id: str) -> str | None:
    if shutil.which("sacct") is None:
        return None
    res = slurm("sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id, check=False)
    states = [s.split()[0] for s in res.stdout.split() if s.strip()] if res.returncode == 0 else []
    return states[-1] if states and states[-1] in TERMINAL_STATES else None


def job_state(job_id: str, jobcomp: Path | None = None) -> tuple[str, str]:
    """(state, reason) of a job now, from scontrol, then the jobcomp file, then sacct; ("UNKNOWN", "") if none knows."""
    records = _scontrol_records(job_id)
    if records:
        states = [r.get("JobState", "UNKNOWN") for r in records]
        live = [s for s in states if s not in TERMINAL_STATES]
        if live:  # an array is done only when every task is
            i = states.index(live[0])
            return live[0], records[i].get("Reason", "")
        bad = [s for s in states if s != "COMPLETED"]
        return (bad[0] if bad else "COMPLETED"), records[0].get("Reason", "")
    comp = _jobcomp_state(job_id, jobcomp or Path(os.environ.get("KGOV_SLURM_JOBCOMP", DEFAULT_CONF.parents[1] / "log" / "jobcomp.txt")))
    if comp:
        return comp, ""
    return (_sacct_state(job_id) or "UNKNOWN"), ""


def wait_for_job(job_id: str, timeout: float = 60.0, *, poll: float = 0.5, jobcomp: Path | None = None) -> str:
    """Wait until JOB (or ARRAYJOB_TASK, or a whole array) ends; return its final state.

    COMPLETED / FAILED / CANCELLED / TIMEOUT / OUT_OF_MEMORY / NODE_FAIL ..., or
    NEVER_SATISFIED ("DependencyNeverSatisfied") for a job that stays pending because a
    dependency failed (Slurm 22.05's default without --kill-on-invalid-dep=yes).
    Raises TimeoutError with the last state seen.
    """
    job_id = str(job_id)
    deadline = time.monotonic() + timeout
    while True:
        state, reason = job_state(job_id, jobcomp)
        if state in TERMINAL_STATES:
            return state
        if state == "PENDING" and reason == NEVER_SATISFIED:
            return NEVER_SATISFIED
        if time.monotonic() >= deadline:
            raise TimeoutError(f"job {job_id} still {state} ({reason or 'no reason'}) after {timeout}s")
        time.sleep(poll)
