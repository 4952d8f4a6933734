"""The dev Slurm cluster (scripts/dev_slurm_cluster.sh) runs real jobs, and wait_for_job reads their end states."""

from __future__ import annotations

import pytest

from tests.slurm_cluster import NEVER_SATISFIED, job_state, sbatch, slurm, wait_for_job

pytestmark = pytest.mark.slurm


def test_job_completes_on_both_partitions(slurm_cluster, tmp_path):
    for part in ("cpu", "gpu"):
        out = tmp_path / f"{part}.out"
        jid = sbatch("-p", part, "-o", str(out), "--wrap", "hostname; sleep 1")
        assert wait_for_job(jid, 60) == "COMPLETED"
        assert out.read_text().strip() in slurm_cluster.nodes
    # scontrol forgot nothing yet, and the jobcomp file has the same final state
    assert f"JobId={jid} " in slurm_cluster.jobcomp.read_text()


def test_failing_job_reports_failed(slurm_cluster, tmp_path):
    jid = sbatch("-o", str(tmp_path / "f.out"), "--wrap", "echo about to fail; exit 3")
    assert wait_for_job(jid, 60) == "FAILED"
    rec = slurm("scontrol", "show", "job", "-o", jid).stdout
    assert "ExitCode=3:0" in rec


def test_array_tasks_complete(slurm_cluster, tmp_path):
    jid = sbatch("--array=0-3", "-o", str(tmp_path / "a_%a.out"), "--wrap", "echo task $SLURM_ARRAY_TASK_ID")
    assert wait_for_job(jid, 90) == "COMPLETED"  # the whole array
    for t in range(4):
        assert wait_for_job(f"{jid}_{t}", 5) == "COMPLETED"
        assert (tmp_path / f"a_{t}.out").read_text().strip() == f"task {t}"


def test_afterok_runs_after_its_dependency(slurm_cluster, tmp_path):
    first = sbatch("-o", str(tmp_path / "first.out"), "--wrap", "sleep 2; date +%s.%N")
    second = sbatch("-o", str(tmp_path / "second.out"), f"--dependency=afterok:{first}", "--wrap", "date +%s.%N")
    assert wait_for_job(second, 90) == "COMPLETED"
    assert wait_for_job(first, 5) == "COMPLETED"
    assert float((tmp_path / "second.out").read_text()) > float((tmp_path / "first.out").read_text())


def test_afterok_on_a_failed_job_never_runs(slurm_cluster, tmp_path):
    marker = tmp_path / "ran"
    first = sbatch("-o", "/dev/null", "--wrap", "sleep 1; exit 3")
    # Slurm 22.05's default: the dependent job stays PENDING (DependencyNeverSatisfied) forever ...
    stays = sbatch("-o", "/dev/null", f"--dependency=afterok:{first}", "--wrap", f"touch {marker}")
    # ... unless it asked to be killed: then it ends CANCELLED without running.
    killed = sbatch("-o", "/dev/null", "--kill-on-invalid-dep=yes", f"--dependency=afterok:{first}",
                    "--wrap", f"touch {marker}")
    try:
        assert wait_for_job(first, 60) == "FAILED"
        assert wait_for_job(killed, 60) == "CANCELLED"
        assert wait_for_job(stays, 60) == NEVER_SATISFIED
        assert job_state(stays) == ("PENDING", NEVER_SATISFIED)
        assert f"JobId={killed} " in slurm_cluster.jobcomp.read_text()  # cancelled jobs are recorded too
    finally:
        slurm("scancel", stays, check=False)
    assert wait_for_job(stays, 30) == "CANCELLED"
    assert not marker.exists()


def test_srun_two_tasks_and_hostnames(slurm_cluster):
    res = slurm("srun", "-N1", "-n2", "hostname", timeout=120)
    assert res.stdout.split() == [slurm_cluster.nodes[0]] * 2
    hosts = slurm("scontrol", "show", "hostnames", f"{slurm_cluster.nodes[0]},n[1-2]").stdout.split()
    assert hosts == [slurm_cluster.nodes[0], "n1", "n2"]
