"""Slurm templates: valid bash, rendered for a 4-node recipe with the right layout and chain."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO_ROOT
from kgov_train.slurm import render_chain, submit
from tests.helpers import compose_cfg

FOUR_NODES = ["recipe=smoke", "cluster=a100_80g_multi_node", "nnodes=4", "run_dir=/scratch/runs/k"]


def bash_n(script: str) -> None:
    res = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_templates_are_valid_bash():
    for name in ("train.sbatch", "cpu.sbatch"):
        bash_n((REPO_ROOT / "slurm" / name).read_text())


def test_render_four_node_chain():
    cfg = compose_cfg(FOUR_NODES)
    jobs = {j.stage: j for j in render_chain(cfg, FOUR_NODES)}
    assert list(jobs) == ["data", "tokenizer", "shards", "pretrain", "sft_general", "sft_domain", "dpo", "eval"]
    for job in jobs.values():
        bash_n(job.script)
        assert f"'stages=[{job.stage}]'" in job.script
        assert job.script.count("#SBATCH --nodes=") == 1  # template defaults replaced, not duplicated
    pre = jobs["pretrain"].script
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --partition=gpu", "#SBATCH --output=/scratch/runs/k/slurm/pretrain-%j.out",
                 "export NPROC_PER_NODE=8", "--rdzv_backend=c10d", "srun --ntasks-per-node=1 --kill-on-bad-exit=1",
                 'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"'):
        assert line in pre, line
    data = jobs["data"].script
    assert "#SBATCH --nodes=1" in data and "#SBATCH --partition=cpu" in data and "torchrun" not in data


def test_dry_run_chains_with_afterok(capsys):
    cfg = compose_cfg(FOUR_NODES)
    ids = submit(cfg, FOUR_NODES, dry_run=True)
    out = capsys.readouterr().out
    assert ids == [f"<{s}>" for s in ("data", "tokenizer", "shards", "pretrain", "sft_general", "sft_domain", "dpo",
                                      "eval")]
    assert "sbatch --parsable --dependency=afterok:<shards> --kill-on-invalid-dep=yes /scratch/runs/k/slurm/03-pretrain.sbatch" in out
    assert "--dependency" not in out.split("01-tokenizer")[0]


def test_cli_submit_dry_run_subset(tmp_path):
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", "submit", *FOUR_NODES[:-1], f"run_dir={tmp_path}",
                          "stages=[sft,dpo]", "--dry-run"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    # `sft` names both SFT stages of the smoke recipe; each waits for the one before it
    assert "00-sft_general.sbatch" in res.stdout and "--dependency=afterok:<sft_general>" in res.stdout
    assert "--dependency=afterok:<sft_domain> --kill-on-invalid-dep=yes" in res.stdout and "02-dpo.sbatch" in res.stdout
    assert not (tmp_path / "slurm").exists(), "a dry run writes nothing"
