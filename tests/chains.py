"""The run folders the slow tests share, trained once per session (pytest finds the fixtures through conftest.py):

upstream_run  the real data/tokenizer/shards stages of the smoke recipe
trained       on top of it: pretrain (ZeRO-2) killed with SIGKILL after its first checkpoint and resumed, then sft and
              dpo under ZeRO-3 with a file of bad records each (test_train_stages, test_eval_stage)
smoke_run     the smoke recipe end to end through the CLI, named SFT stages included (test_smoke_chain, test_papers)

Fixtures live here, not in a test module: a fixture imported into several test modules is instantiated once per
module, whatever its scope.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import REPO_ROOT
from tests.helpers import compose_cfg

PRETRAIN_STEPS, SAVE_STEPS = 40, 10
SEQ_LEN, MICRO_BATCH, NPROC = 128, 4, 2
CHAT = REPO_ROOT / "examples" / "data" / "ko-chatbot"

# Records the sft/dpo stages must skip and count (one per reason), appended to the real data as a second file.
BAD_SFT = [
    "{not json",
    json.dumps({"messages": []}),
    json.dumps({"messages": [{"role": "bot", "content": "안녕"}, {"role": "assistant", "content": "네"}]}),
    json.dumps({"messages": [{"role": "user", "content": "   "}, {"role": "assistant", "content": "네"}]}),
    json.dumps({"messages": [{"role": "user", "content": "혼잣말"}]}),
]
BAD_DPO = [
    json.dumps({"prompt": [{"role": "user", "content": "질문"}], "chosen": [], "rejected": [
        {"role": "assistant", "content": "답"}]}),
    json.dumps({"prompt": [{"role": "assistant", "content": "질문"}], "chosen": [
        {"role": "assistant", "content": "답"}], "rejected": [{"role": "assistant", "content": "답"}]}),
]


def run_chain(overrides: list[str]):
    from kgov_train.pipeline import validate
    from kgov_train.pipeline import run_chain as chain

    cfg = compose_cfg(overrides)
    validate(cfg)
    return chain(cfg, overrides)


@contextlib.contextmanager
def fd_output(path: Path):
    """Send this process's fd 1 and 2 (and so torchrun's children's output) to `path` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def metrics_rows(stage_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (stage_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]


def manifest(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "manifest.json").read_text())


def processes_mentioning(text: str) -> list[int]:
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid():
            try:
                if text.encode() in Path(f"/proc/{d}/cmdline").read_bytes():
                    found.append(int(d))
            except OSError:
                pass
    return found


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def upstream_run(tmp_path_factory) -> Path:
    """data, tokenizer and shards of the smoke recipe, run for real."""
    run_dir = tmp_path_factory.mktemp("train") / "run"
    run_chain(["recipe=smoke", f"run_dir={run_dir}", "stages=[data,tokenizer,shards]"])
    return run_dir


@pytest.fixture(scope="session")
def trained(upstream_run, tmp_path_factory) -> SimpleNamespace:
    extra = tmp_path_factory.mktemp("extra")
    (extra / "bad_sft.jsonl").write_text("\n".join(BAD_SFT) + "\n", encoding="utf-8")
    (extra / "bad_dpo.jsonl").write_text("\n".join(BAD_DPO) + "\n", encoding="utf-8")
    run_dir = upstream_run
    overrides = [
        "recipe=smoke", f"run_dir={run_dir}", "sft_stages=null",  # one `sft` stage (the named ones: test_smoke_chain)
        f"pretrain.max_steps={PRETRAIN_STEPS}", f"pretrain.save_steps={SAVE_STEPS}", "pretrain.eval_sequences=4",
        "sft.max_steps=6", "sft.save_steps=3", "sft.zero_stage=3", "sft.report_to=[wandb,tensorboard,mlflow]",
        f"sft.data=['{CHAT / 'sft.jsonl'}','{extra / 'bad_sft.jsonl'}']",
        "dpo.max_steps=4", "dpo.save_steps=2", "dpo.zero_stage=3",
        "dpo.datasets=[]", f"dpo.data=['{CHAT / 'dpo.jsonl'}','{extra / 'bad_dpo.jsonl'}']",
    ]
    log = run_dir.parent / "train.log"
    stage = run_dir / "pretrain"
    timings = {}

    # 1. pretrain through the real CLI in its own session; SIGKILL the whole group once checkpoint-10 is complete
    #    and a couple more steps are logged (they are redone after the resume).
    from kgov_train.train.resume import complete_checkpoints

    t0 = time.time()
    sigkill_when([*overrides, "stages=[pretrain]"], log, "a checkpoint",
                 lambda rows: complete_checkpoints(stage / "checkpoints") and rows and rows[-1]["step"] >= SAVE_STEPS + 2,
                 stage)
    killed_at = time.time()
    deadline = time.time() + 20
    while processes_mentioning(str(run_dir)) and time.time() < deadline:  # the workers die with their agent
        time.sleep(0.1)
    survivors = processes_mentioning(str(run_dir))
    for pid in survivors:  # only so a failing assertion leaves no stray trainer behind
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    timings["pretrain_killed"] = killed_at - t0
    killed_rows = metrics_rows(stage)
    checkpoints = complete_checkpoints(stage / "checkpoints")
    resume_step = int(checkpoints[-1].name.split("-")[1])
    status_after_kill = manifest(stage)["status"]

    # 2. The same command again, through run_chain: it must resume from that checkpoint and seal the stage.
    t0 = time.time()
    with fd_output(log):
        run_chain([*overrides, "stages=[pretrain]"])
    timings["pretrain_resumed"] = time.time() - t0

    # 3. sft and dpo under ZeRO-3.
    for name in ("sft", "dpo"):
        t0 = time.time()
        with fd_output(log):
            run_chain([*overrides, f"stages=[{name}]"])
        timings[name] = time.time() - t0
    print("stage wall times (s):", {k: round(v, 1) for k, v in timings.items()})
    return SimpleNamespace(run_dir=run_dir, log=log.read_text(errors="replace"), killed_rows=killed_rows,
                           killed_at=killed_at, resume_step=resume_step, survivors=survivors,
                           status_after_kill=status_after_kill, overrides=overrides)


def sigkill_when(args: list[str], log: Path, what: str, ready, stage: Path, limit: float = 300) -> None:
    """`python -m kgov_train.cli *args` in a session of its own, output to `log`; SIGKILL its whole process group
    as soon as ready(rows of stage/metrics.jsonl) holds (it must, before the run ends and within `limit` s)."""
    t0 = time.time()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kgov_train.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        while True:
            assert proc.poll() is None, f"the run ended before it could be killed; see {log}"
            assert time.time() - t0 < limit, f"no {what} after {limit} s; see {log}"
            rows = metrics_rows(stage) if (stage / "metrics.jsonl").exists() else []
            if ready(rows):
                break
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kgov(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`kgov-train recipe=smoke run_dir=... <overrides>` in a subprocess; its output goes to <run_dir>.log."""
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", "recipe=smoke", f"run_dir={run_dir}", *overrides],
                         capture_output=True, text=True, timeout=1200)
    (run_dir.parent / f"{run_dir.name}.log").write_text(res.stdout + res.stderr)
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    return res


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke recipe end to end (a few minutes on 2 cores)."""
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    kgov(run_dir)
    return run_dir
