"""kgov_train.runlock: one chain per run folder; stale locks (killed holder, dead node, requeue) taken over."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kgov_train import runlock
from kgov_train.runlock import HOLDER_NAME, LOCK_NAME, RunFolderBusy

ROOT = Path(__file__).resolve().parents[1]

# A child that tries once and reports: "WON <token>" or "BUSY <message>".
TRY = """
try:
    lk = runlock.acquire(Path(sys.argv[1]){kw})
except runlock.RunFolderBusy as e:
    print("BUSY", e, flush=True)
else:
    print("WON", lk.token, flush=True)
    lk.release()
"""
# A child that holds the lock until a line arrives on stdin.
HOLD = """
lk = runlock.acquire(Path(sys.argv[1]))
print(json.dumps({"host": lk.holder.host, "pid": lk.holder.pid, "token": lk.token}), flush=True)
sys.stdin.readline()
lk.release()
"""


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return {**env, **extra}


def _code(body: str) -> str:
    head = ("import json, logging, sys, time\nfrom pathlib import Path\n"
            "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\nfrom kgov_train import runlock\n")
    return head + textwrap.dedent(body)


def _child(body: str, *args, env=None, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _code(body), *map(str, args)], cwd=ROOT, env=env or _env(),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def _run(body: str, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _code(body), *map(str, args)], cwd=ROOT, env=env or _env(),
                          text=True, capture_output=True, timeout=60)


def _hold(run_dir: Path) -> tuple[subprocess.Popen, dict]:
    p = _child(HOLD, run_dir, stdin=subprocess.PIPE)
    line = p.stdout.readline()
    assert line, p.stderr.read()
    return p, json.loads(line)


def _plant(run_dir: Path, *, host="ghost-node", pid=4321, slurm=None, age=0.0, token="ghosttoken") -> Path:
    """A holder file as another node would have left it, with a heartbeat `age` seconds old."""
    run_dir.mkdir(parents=True, exist_ok=True)
    hp = run_dir / HOLDER_NAME
    hp.write_text(json.dumps({"host": host, "pid": pid, "slurm_job_id": slurm, "started": "2024-01-01T00:00:00+00:00",
                              "command": "kgov-train run ghost", "token": token}))
    t = time.time() - age
    os.utime(hp, (t, t))
    return hp


def _holder_token(run_dir: Path) -> str | None:
    hp = run_dir / HOLDER_NAME
    return json.loads(hp.read_text())["token"] if hp.exists() else None


@pytest.fixture(autouse=True)
def _no_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


def test_second_acquire_refused_while_held_then_succeeds(tmp_path):
    run_dir = tmp_path / "new" / "run"  # created by acquire
    p, info = _hold(run_dir)
    try:
        r = _run(TRY.format(kw=""), run_dir)
        assert r.stdout.startswith("BUSY"), r.stdout + r.stderr
        for part in (info["host"], f"pid {info['pid']}", str(run_dir / LOCK_NAME), "slurm job none", "since "):
            assert part in r.stdout
        with pytest.raises(RunFolderBusy) as e:  # also from another fd in this process
            runlock.acquire(run_dir)
        assert e.value.holder.pid == info["pid"] and e.value.holder.token == info["token"]
        assert "-c" in e.value.holder.command
    finally:
        p.communicate("\n", timeout=30)
    assert p.returncode == 0 and _holder_token(run_dir) is None
    with runlock.acquire(run_dir) as lk:
        assert lk.holder.pid == os.getpid() and _holder_token(run_dir) == lk.token
    assert _holder_token(run_dir) is None
    lk.release()  # idempotent


def test_sigkilled_holder_is_stale_and_taken_over(tmp_path, caplog):
    p, info = _hold(tmp_path)
    os.kill(info["pid"], signal.SIGKILL)
    p.wait(timeout=30)
    assert _holder_token(tmp_path) == info["token"]  # the dead holder left its file behind
    with caplog.at_level(logging.WARNING, logger="kgov_train"):
        lk = runlock.acquire(tmp_path)
    try:
        assert _holder_token(tmp_path) == lk.token
        msg = " ".join(r.getMessage() for r in caplog.records)
        assert "dead holder" in msg and f"pid {info['pid']}" in msg
    finally:
        lk.release()


RACE = """
d, role, flock = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
(d.parent / f"ready-{role}").touch()  # barrier: both children derive one start time from the files
while not all((d.parent / f"ready-{r}").exists() for r in "ab"):
    time.sleep(0.01)
start = max((d.parent / f"ready-{r}").stat().st_mtime for r in "ab") + 0.5
if not flock:  # as on a node whose flock does not see the other node's: only the holder file guards
    import errno
    def _nolock(*a):
        raise OSError(errno.ENOLCK, "no locks")
    runlock.fcntl.flock = _nolock
for i in range({rounds}):
    t = start + i * 0.6
    if role == "a" and i % 2:  # odd rounds: both race to take over a dead node's lock
        time.sleep(max(0, t - 0.2 - time.time()))
        hp = d / runlock.HOLDER_NAME
        hp.write_text(json.dumps(dict(host="ghost", pid=1, slurm_job_id=None, started="x", command="x", token="g")))
        os.utime(hp, (t - 1e4, t - 1e4))
    time.sleep(max(0, t - 0.005 - time.time()))
    while time.time() < t:
        pass
    try:
        lk = runlock.acquire(d)
    except runlock.RunFolderBusy:
        lk = None
    print("WON" if lk else "BUSY", flush=True)
    time.sleep(0.3)
    if lk:
        lk.release()
"""


@pytest.mark.parametrize("flock", [True, False], ids=["flock", "no-flock"])
def test_simultaneous_acquires_exactly_one_wins(tmp_path, flock):
    rounds, run_dir = 6, tmp_path / "run"
    run_dir.mkdir()
    body = "import os\n" + RACE.replace("{rounds}", str(rounds))
    kids = [_child(body, run_dir, role, int(flock)) for role in "ab"]
    outs = [k.communicate(timeout=60) for k in kids]
    for k, (out, err) in zip(kids, outs):
        assert k.returncode == 0 and len(out.split()) == rounds, err
    results = list(zip(*(out.split() for out, _ in outs)))
    assert all(sorted(r) == ["BUSY", "WON"] for r in results), results
    assert _holder_token(run_dir) is None


def test_other_host_holder_judged_by_heartbeat(tmp_path, caplog, monkeypatch):
    _plant(tmp_path, age=0.0)
    with pytest.raises(RunFolderBusy) as e:
        runlock.acquire(tmp_path)
    assert "ghost-node" in str(e.value) and "pid 4321" in str(e.value) and "kgov-train run ghost" in str(e.value)
    assert _holder_token(tmp_path) == "ghosttoken"  # a live holder's file is left alone

    _plant(tmp_path, age=runlock.LEASE_S + 60)
    with caplog.at_level(logging.WARNING, logger="kgov_train"):
        lk = runlock.acquire(tmp_path)
    assert _holder_token(tmp_path) == lk.token
    lk.release()
    assert "ghost-node" in caplog.text and "heartbeat" in caplog.text

    # the lease is overridable, by argument and by module attribute
    _plant(tmp_path, age=10)
    with pytest.raises(RunFolderBusy):
        runlock.acquire(tmp_path)
    runlock.acquire(tmp_path, lease_s=5).release()
    _plant(tmp_path, age=10)
    monkeypatch.setattr(runlock, "LEASE_S", 5.0)
    runlock.acquire(tmp_path).release()


def test_holder_of_our_own_slurm_job_is_a_requeued_predecessor(tmp_path):
    _plant(tmp_path, slurm="4242", age=0.0)
    r = _run(TRY.format(kw=""), tmp_path, env=_env(SLURM_JOB_ID="4243", PATH=_fake_squeue(tmp_path, "RUNNING")))
    assert r.stdout.startswith("BUSY") and "slurm job 4242" in r.stdout, r.stdout + r.stderr
    r = _run(TRY.format(kw=""), tmp_path, env=_env(SLURM_JOB_ID="4242"))
    assert r.stdout.startswith("WON"), r.stdout + r.stderr
    assert "requeued" in r.stderr and "ghost-node" in r.stderr


def _fake_squeue(tmp_path: Path, stdout: str, rc: int = 0, stderr: str = "") -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    sq = bin_dir / "squeue"
    sq.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/squeue.calls\nprintf "{stdout}"\nprintf "{stderr}" >&2\nexit {rc}\n')
    sq.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.parametrize("out, rc, err, age, busy", [
    ("RUNNING\\n", 0, "", 1e4, True),  # Slurm runs it: alive however old the heartbeat
    ("PENDING\\n", 0, "", 1e4, True),  # requeued, will come back to its folder
    ("CANCELLED\\n", 0, "", 0.0, False),
    ("", 1, "slurm_load_jobs error: Invalid job id specified", 0.0, False),  # purged: long over
    ("", 1, "slurm_load_jobs error: Unable to contact slurm controller", 0.0, True),  # unknown: the lease decides
    ("", 1, "slurm_load_jobs error: Unable to contact slurm controller", 1e4, False),
])
def test_other_host_holder_with_slurm_job(tmp_path, monkeypatch, out, rc, err, age, busy):
    run_dir = tmp_path / "run"
    _plant(run_dir, slurm="777", age=age)
    monkeypatch.setenv("PATH", _fake_squeue(tmp_path, out, rc, err))
    if busy:
        with pytest.raises(RunFolderBusy, match="slurm job 777"):
            runlock.acquire(run_dir)
    else:
        runlock.acquire(run_dir).release()
    assert (tmp_path / "squeue.calls").read_text().split() == ["-h", "-j", "777", "-o", "%T"]


def test_inherit(tmp_path):
    with pytest.raises(RunFolderBusy, match="no chain holds it"):  # nothing to inherit
        runlock.acquire(tmp_path, inherit="0" * 32)
    lk = runlock.acquire(tmp_path)
    try:
        r = _run(TRY.format(kw=", inherit=sys.argv[2]") + "print('FILE', (Path(sys.argv[1]) / runlock.HOLDER_NAME).exists())",
                 tmp_path, lk.token)
        assert r.stdout.split()[:2] == ["WON", lk.token] and "FILE True" in r.stdout, r.stdout + r.stderr
        inherited = runlock.acquire(tmp_path, inherit=lk.token)
        assert inherited.inherited and inherited.holder.pid == os.getpid()
        inherited.release()
        assert _holder_token(tmp_path) == lk.token  # the parent's lock is untouched
        r = _run(TRY.format(kw=""), tmp_path)
        assert r.stdout.startswith("BUSY"), r.stdout + r.stderr
        r = _run(TRY.format(kw=", inherit='f' * 32"), tmp_path)
        assert r.stdout.startswith("BUSY") and "not the holder's" in r.stdout and f"pid {os.getpid()}" in r.stdout
    finally:
        lk.release()
    assert _holder_token(tmp_path) is None


def test_heartbeat_and_release_only_our_own_file(tmp_path, caplog):
    lk = runlock.acquire(tmp_path, heartbeat_s=0.05)
    hp = tmp_path / HOLDER_NAME
    os.utime(hp, (1, 1))
    time.sleep(0.5)
    assert time.time() - hp.stat().st_mtime < 5  # refreshed
    _plant(tmp_path, token="thief")  # someone judged us dead and took over
    with caplog.at_level(logging.ERROR, logger="kgov_train"):
        time.sleep(0.3)
    assert "no longer names us" in caplog.text
    lk.release()
    assert _holder_token(tmp_path) == "thief" and not lk._thread.is_alive()


def test_released_at_interpreter_exit(tmp_path):
    r = _run("lk = runlock.acquire(Path(sys.argv[1]))\nprint(lk.token)", tmp_path)
    assert r.returncode == 0 and len(r.stdout.strip()) == 32, r.stderr
    assert _holder_token(tmp_path) is None
    with runlock.acquire(tmp_path) as lk:
        assert lk.holder.host == socket.gethostname()
