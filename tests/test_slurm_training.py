"""Training stages as Slurm jobs on the live test cluster (scripts/dev_slurm_cluster.sh): the pretrain job,
sent USR1 as Slurm does before a time limit, checkpoints, requeues itself, resumes and ends with the final
loss of an uninterrupted run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.slurm_cluster import _slurm_env, slurm, wait_for_job
from tests.chains import manifest, metrics_rows, run_chain
from tests.helpers import compose_cfg

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
STEPS = 40


def _copy_upstream(upstream: Path, run_dir: Path) -> Path:
    for name in ("data", "tokenizer", "shards"):
        shutil.copytree(upstream / name, run_dir / name)
    return run_dir


def test_usr1_checkpoints_requeues_and_resumes_to_the_uninterrupted_loss(slurm_cluster, upstream_run, tmp_path):
    common = ["recipe=smoke", "stages=[pretrain]", f"pretrain.max_steps={STEPS}", "pretrain.save_steps=1000",
              "pretrain.eval_sequences=0"]
    # the uninterrupted reference, here
    ref = _copy_upstream(upstream_run, tmp_path / "ref")
    run_chain([*common, f"run_dir={ref}"])
    ref_rows = metrics_rows(ref / "pretrain")

    run_dir = _copy_upstream(upstream_run, tmp_path / "slurm")
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", "submit", *common, f"run_dir={run_dir}",
                          "cluster=dev_slurm_cpu", "nproc_per_node=2"],
                         capture_output=True, text=True, timeout=120, env=_slurm_env())
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip().splitlines()[-1].split()[-1]
    stage = run_dir / "pretrain"
    t0 = time.time()
    while not ((stage / "metrics.jsonl").exists() and len(metrics_rows(stage)) >= 8):
        assert time.time() - t0 < 300, slurm("scontrol", "show", "job", job).stdout
        time.sleep(0.2)
    slurm("scancel", "--batch", "--signal=USR1", job)  # what --signal=B:USR1@seconds does at the time limit
    # Slurm holds a requeued job back ~2 minutes (BeginTime); let it start at once here
    t0 = time.time()
    while True:  # requeued and pending on its begin time, the first run's clean-up done
        show = slurm("scontrol", "show", "job", job).stdout
        if "Restarts=1" in show and "JobState=PENDING" in show and "Reason=BeginTime" in show:
            break
        assert time.time() - t0 < 300 and "JobState=FAILED" not in show, show
        time.sleep(0.5)
    # A start within the same second as the first run's end can meet "Job credential revoked" (slurmd keys
    # revoked credentials by second); wait that second out.
    time.sleep(1.1)
    slurm("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)
    state = wait_for_job(job, timeout=600)
    log = "\n".join(p.read_text(errors="replace") for p in (run_dir / "slurm").glob("pretrain-*.out"))
    assert state == "COMPLETED", log[-4000:]
    assert "USR1: asking the training processes" in log and "requeueing job" in log and "(restart 1)" in log

    m = manifest(stage)
    assert m["status"] == "complete" and 8 <= m["metrics"]["resumed_from_step"] < STEPS
    rows = metrics_rows(stage)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert rows[-1]["loss"] == pytest.approx(ref_rows[-1]["loss"], abs=1e-4)
    for a, b in zip(rows, ref_rows):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4), a["step"]


def test_submit_runs_the_whole_smoke_chain_as_dependent_jobs(slurm_cluster, upstream_run, tmp_path):
    """`kgov-train submit recipe=smoke cluster=dev_slurm_cpu`: every stage a job, chained with afterok, each
    sealing the same outputs a local run seals (data, tokenizer and shards byte for byte)."""
    from kgov_train.stages import chain

    run_dir = tmp_path / "chain"
    short = ["pretrain.max_steps=20", "pretrain.save_steps=10", "sft_stages.sft_general.max_steps=6",
             "sft_stages.sft_general.save_steps=3", "sft_stages.sft_domain.max_steps=4",
             "sft_stages.sft_domain.save_steps=2", "dpo.max_steps=4", "dpo.save_steps=2"]
    CHAIN = [s.name for s in chain(compose_cfg(["recipe=smoke"]))]  # sft_general, sft_domain among them
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", "submit", "recipe=smoke", f"run_dir={run_dir}",
                          "cluster=dev_slurm_cpu", "nproc_per_node=2", *short],
                         capture_output=True, text=True, timeout=120, env=_slurm_env())
    assert res.returncode == 0, res.stderr
    jobs = res.stdout.strip().splitlines()[-1].split()  # the last line: the job ids, in chain order
    assert len(jobs) == len(CHAIN), res.stdout
    for job, stage in zip(jobs, CHAIN):
        state = wait_for_job(job, timeout=600)
        log = "\n".join(p.read_text(errors="replace") for p in (run_dir / "slurm").glob(f"{stage}-*.out"))
        assert state == "COMPLETED", f"{stage}: {state}\n{log[-3000:]}"
    for stage in CHAIN:
        m = manifest(run_dir / stage)
        assert m["status"] == "complete", stage
    for stage in ("data", "tokenizer", "shards"):  # deterministic stages: the local run's bytes
        assert [(o["path"], o["sha256"]) for o in manifest(run_dir / stage)["outputs"]] == [
            (o["path"], o["sha256"]) for o in manifest(upstream_run / stage)["outputs"]], stage
    for stage in ("pretrain", "sft_general", "sft_domain", "dpo"):
        assert (run_dir / stage / "final" / "config.json").is_file()
        assert manifest(run_dir / stage)["metrics"]["world_size"] == 2
