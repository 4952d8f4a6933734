"""The pretraining engine: token schedules, loss-spike policies, preemption, step metrics.

Unit tests for the pieces, and real 2-process DeepSpeed runs (slow) on the smoke recipe's shards for
SIGUSR1 checkpoint-and-stop, the skip policy and the rollback policy (a spike injected through
a test-only callback, tests/faults.py, at a known global sample)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from kgov_train.train.schedule import ScheduleError, pretrain_schedule
from tests.helpers import compose_cfg
from tests.chains import manifest, metrics_rows, run_chain

NPROC, MICRO = 2, 4  # the smoke recipe's
SPS = NPROC * MICRO  # samples per optimizer step (no accumulation)


# ------------------------------------------------------------------ units

def _pretrain(**kw):
    return OmegaConf.merge(compose_cfg(["recipe=smoke"]).pretrain, kw)


def test_token_schedule_sets_accumulation_steps_and_warmup():
    s = pretrain_schedule(_pretrain(seq_len=128, micro_batch_size=4, global_batch_tokens=128 * 4 * 2 * 3,
                                    tokens=10_000, warmup_tokens=3000), world_size=2)
    assert s.gradient_accumulation_steps == 3 and s.global_batch_tokens == 3072
    assert s.max_steps == math.ceil(10_000 / 3072) == 4 and s.warmup_steps == 1
    wsd = pretrain_schedule(_pretrain(seq_len=128, micro_batch_size=4, max_steps=100, warmup_steps=10,
                                      lr_scheduler_type="wsd", decay_tokens=20 * 1024, min_lr_ratio=0.1), world_size=2)
    assert wsd.scheduler == "warmup_stable_decay" and wsd.decay_steps == 20
    assert wsd.scheduler_kwargs == {"num_decay_steps": 20, "decay_type": "cosine", "min_lr_ratio": 0.1}
    # no decay yet: stable to the end, so a later run can start the decay from any checkpoint
    assert pretrain_schedule(_pretrain(lr_scheduler_type="wsd", max_steps=50, warmup_steps=5), 2).decay_steps == 0
    with pytest.raises(ScheduleError, match=r"pretrain.global_batch_tokens=1000 must be a positive multiple"):
        pretrain_schedule(_pretrain(seq_len=128, micro_batch_size=4, global_batch_tokens=1000), world_size=2)
    with pytest.raises(ScheduleError, match=r"warmup .* \+ decay_tokens .* exceed"):
        pretrain_schedule(_pretrain(seq_len=128, micro_batch_size=4, max_steps=10, warmup_steps=5,
                                    lr_scheduler_type="wsd", decay_tokens=10 * 1024), world_size=2)


def test_wsd_lr_follows_warmup_stable_decay():
    import torch
    from transformers.optimization import get_scheduler

    s = pretrain_schedule(_pretrain(max_steps=100, warmup_steps=10, lr_scheduler_type="wsd", seq_len=128,
                                    micro_batch_size=4, decay_tokens=20 * 1024), world_size=2)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_scheduler(s.scheduler, opt, num_warmup_steps=s.warmup_steps, num_training_steps=s.max_steps,
                          scheduler_specific_kwargs=s.scheduler_kwargs)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[5] < lrs[10] == 1.0 and set(lrs[10:80]) == {1.0} and lrs[80] == 1.0 > lrs[90] > lrs[99]


def test_spike_guard(tmp_path):
    from kgov_train.train.engine import SpikeGuard

    g = SpikeGuard("skip", factor=3.0, ema_steps=5, min_steps=3, max_events=2, log_path=tmp_path / "s.jsonl",
                   is_main=True)
    assert not any(g.check(x, i) for i, x in enumerate([9.0, 8.0, 30.0, 7.0]))  # 30 before min_steps: no spike
    ema = g.ema
    assert g.check(ema * 3.5, 10) and g.ema == ema  # a spike does not move the average
    assert g.check(float("nan"), 11)
    rows = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [11, 12] and rows[1]["loss"] == "nan"
    with pytest.raises(RuntimeError, match="more than pretrain.spike.max_events=2"):
        g.check(float("inf"), 12)
    assert not SpikeGuard("none", 3, 5, 0, 1, tmp_path / "n", True).check(float("nan"), 50)


def test_data_shift_accumulates(tmp_path):
    from kgov_train.train.engine import add_data_shift, data_shift

    assert data_shift(tmp_path, 100) == 0
    add_data_shift(tmp_path, 20, 8, 21)
    add_data_shift(tmp_path, 40, 16, 42)
    assert [data_shift(tmp_path, s) for s in (19, 20, 39, 40, 99)] == [0, 8, 8, 24, 24]


def test_recipe_checks_the_schedule():
    from kgov_train.errors import RecipeError
    from kgov_train.pipeline import validate

    with pytest.raises(RecipeError, match="pretrain.global_batch_tokens=100"):
        validate(compose_cfg(["recipe=smoke", "pretrain.global_batch_tokens=100"]))
    with pytest.raises(RecipeError, match="pretrain.lr_scheduler_type: one of"):  # a transformers one, not pretrain's
        validate(compose_cfg(["recipe=smoke", "pretrain.lr_scheduler_type=polynomial"]))


# ------------------------------------------------------------------ real runs

def _run_dir(upstream: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    for name in ("data", "tokenizer", "shards"):
        shutil.copytree(upstream / name, run_dir / name)
    return run_dir


def _spike_at(sample: int) -> str:
    """The test-only fault callback (tests/faults.py): the step reading `sample` gets a loss spike."""
    return f"pretrain.callbacks=[{{_target_:tests.faults.SpikeAtSample,sample:{sample}}}]"


def _overrides(run_dir: Path, *extra: str) -> list[str]:
    return ["recipe=smoke", f"run_dir={run_dir}", "stages=[pretrain]", "pretrain.max_steps=30",
            "pretrain.save_steps=10", "pretrain.eval_sequences=0", "pretrain.spike.min_steps=5", *extra]


def _workers(run_dir: Path) -> list[int]:
    """The torchrun worker processes of this run (they have LOCAL_RANK in their environment)."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if str(run_dir).encode() in Path(f"/proc/{d}/cmdline").read_bytes() and \
                    b"LOCAL_RANK=" in Path(f"/proc/{d}/environ").read_bytes():
                found.append(int(d))
        except OSError:
            pass
    return found


@pytest.mark.slow
@pytest.mark.parametrize("how", ["USR1 to one worker", "TERM to the process group"])
def test_signal_saves_a_checkpoint_at_the_step_boundary_and_a_rerun_resumes(upstream_run, tmp_path, how):
    run_dir = _run_dir(upstream_run, tmp_path)
    stage = run_dir / "pretrain"
    ov = _overrides(run_dir, "pretrain.save_steps=1000")  # no periodic checkpoint: only the signal makes one
    log = tmp_path / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kgov_train.cli", *ov], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    t0 = time.time()
    while not ((stage / "metrics.jsonl").exists() and len(metrics_rows(stage)) >= 5):
        assert proc.poll() is None and time.time() - t0 < 240, log.read_text(errors="replace")[-3000:]
        time.sleep(0.05)
    workers = _workers(run_dir)
    assert len(workers) == NPROC
    if how.startswith("USR1"):
        os.kill(workers[0], signal.SIGUSR1)  # one rank is enough: they agree at the step boundary
        assert proc.wait(timeout=120) != 0
    else:  # scancel, kill: the CLI dies, torchrun forwards SIGTERM and gives its workers 30 s
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        t0 = time.time()
        while _workers(run_dir):
            assert time.time() - t0 < 60, "workers still running a minute after SIGTERM"
            time.sleep(0.1)
    m = manifest(stage)
    sig = "SIGUSR1" if how.startswith("USR1") else "SIGTERM"
    assert m["status"] == "interrupted" and m["error"].startswith(f"preempted: preempted by {sig}"), m["error"]
    ckpts = sorted(stage.glob("checkpoints/checkpoint-*"))
    assert len(ckpts) == 1 and (ckpts[0] / "trainer_state.json").is_file()
    stopped = int(ckpts[0].name.split("-")[1])
    assert 5 <= stopped < 30 and max(r["step"] for r in metrics_rows(stage)) == stopped
    if how.startswith("USR1"):  # the CLI lived to report it
        assert "saved, rerun the same command to resume" in log.read_text(errors="replace")

    run_chain(ov)
    m = manifest(stage)
    assert m["status"] == "complete" and m["metrics"]["resumed_from_step"] == stopped and m["metrics"]["steps"] == 30
    assert [r["step"] for r in metrics_rows(stage)] == list(range(1, 31))


@pytest.mark.slow
def test_skip_policy_trains_nothing_on_the_spike_and_mfu_is_logged(upstream_run, tmp_path):
    run_dir = _run_dir(upstream_run, tmp_path)
    stage = run_dir / "pretrain"
    run_chain(_overrides(run_dir, "pretrain.spike.policy=skip", "cluster.peak_tflops_per_device=0.001",
                         _spike_at(20 * SPS)))  # read by step 21
    m = manifest(stage)
    assert m["status"] == "complete" and m["metrics"]["loss_spikes"] == 1
    spikes = [json.loads(x) for x in (stage / "spikes.jsonl").read_text().splitlines()]
    assert [(s["step"], s["policy"]) for s in spikes] == [(21, "skip")] and spikes[0]["loss"] > 10
    rows = {r["step"]: r for r in metrics_rows(stage)}
    assert rows[21]["loss"] == 0.0 and rows[20]["loss"] > 1 and rows[22]["loss"] > 1  # the spike's batch: no loss
    per_token = m["metrics"]["flops_per_token"]
    for r in rows.values():
        assert {"step_time", "data_wait", "memory_gb", "mfu"} <= set(r) or r["step"] == 1
        if "mfu" in r:
            assert r["mfu"] == pytest.approx(r["tokens_per_sec"] * per_token / (NPROC * 1e9), rel=1e-3)


@pytest.mark.slow
def test_rollback_policy_restarts_from_the_checkpoint_past_the_data_window(upstream_run, tmp_path):
    run_dir = _run_dir(upstream_run, tmp_path)
    stage = run_dir / "pretrain"
    run_chain(_overrides(run_dir, "pretrain.spike.policy=rollback", _spike_at(22 * SPS)))  # step 23; last checkpoint: 20
    m = manifest(stage)
    assert m["status"] == "complete" and m["metrics"]["steps"] == 30
    assert json.loads((stage / "checkpoints" / "data_shift.json").read_text()) == [
        {"from_step": 20, "samples": 3 * SPS, "spike_step": 23}]
    assert m["metrics"]["data_samples_skipped"] == 3 * SPS and m["metrics"]["resumed_from_step"] == 20
    rows = metrics_rows(stage)
    assert [r["step"] for r in rows] == list(range(1, 31)) and all(r["loss"] > 1 for r in rows)
