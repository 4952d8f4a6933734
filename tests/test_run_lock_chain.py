"""One chain per run folder, end to end: a second `kgov-train` on a folder in use is refused at once naming the
holder, while the first finishes; after the holder is SIGKILLed (with its torchrun workers) the next run takes the
folder over and resumes. The lock itself is tested in tests/test_runlock.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kgov_train.runlock import HOLDER_NAME
from tests.chains import manifest

pytestmark = pytest.mark.slow


def _start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    log = run_dir.parent / f"{run_dir.name}-{time.monotonic_ns()}.log"
    proc = subprocess.Popen([sys.executable, "-m", "kgov_train.cli", "recipe=smoke", f"run_dir={run_dir}",
                             "stages=[pretrain]", "pretrain.max_steps=6", "pretrain.save_steps=3",
                             "pretrain.eval_sequences=0", *overrides],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log
    return proc


def _holder(run_dir: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads((run_dir / HOLDER_NAME).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.1)
    raise AssertionError(f"no chain took {run_dir} within {timeout}s")


def _log(proc: subprocess.Popen) -> str:
    return proc.log.read_text(errors="replace")


def test_a_second_chain_is_refused_and_a_killed_holder_is_taken_over(upstream_run, tmp_path):
    run_dir = tmp_path / "run"
    for name in ("data", "tokenizer", "shards"):
        shutil.copytree(upstream_run / name, run_dir / name)

    first = _start(run_dir)
    holder = _holder(run_dir)
    assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
    t0 = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "kgov_train.cli", "recipe=smoke", f"run_dir={run_dir}",
                             "stages=[pretrain]", "pretrain.max_steps=6"], capture_output=True, text=True, timeout=120)
    refused_in = time.monotonic() - t0
    out = second.stdout + second.stderr
    assert second.returncode == 1 and "Traceback" not in out, out
    assert "in use by another kgov-train chain" in out and f"pid {first.pid} on host {holder['host']}" in out, out
    assert first.poll() is None, "the refusal came after the first chain ended: it proves nothing"
    assert first.wait(timeout=300) == 0, _log(first)
    assert manifest(run_dir / "pretrain")["status"] == "complete"
    assert not (run_dir / HOLDER_NAME).exists()  # released
    print(f"second chain refused after {refused_in:.1f}s (process start included)")

    # The holder SIGKILLed with its process group (OOM killer, scancel): its lock is stale, taken over.
    killed = _start(run_dir, "force=true", "pretrain.save_steps=1")
    _holder(run_dir)
    deadline = time.monotonic() + 120
    while not list((run_dir / "pretrain" / "checkpoints").glob("checkpoint-*/latest")):
        assert time.monotonic() < deadline and killed.poll() is None, _log(killed)
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    assert json.loads((run_dir / HOLDER_NAME).read_text())["pid"] == killed.pid  # left behind by the dead chain
    after = _start(run_dir, "pretrain.save_steps=1")
    assert after.wait(timeout=300) == 0, _log(after)
    log = _log(after)
    assert f"taking over the lock of dead holder pid {killed.pid}" in log, log
    m = manifest(run_dir / "pretrain")
    assert m["status"] == "complete" and m["metrics"]["resumed_from_step"] >= 1
