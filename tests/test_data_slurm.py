"""data.executor=slurm: the same corpus pass as datatrove array jobs on a real (local) Slurm cluster."""

from __future__ import annotations

import pytest

from kgov_train.pipeline import validate
from kgov_train.manifest import Manifest
from kgov_train.pipeline import run_chain
from tests.helpers import compose_cfg

pytestmark = pytest.mark.slurm


def run_data(run_dir, *overrides: str) -> Manifest:
    ov = ["recipe=smoke", f"run_dir={run_dir}", "stages=[data]", "data.tasks=3", *overrides]
    cfg = compose_cfg(ov)
    validate(cfg)
    run_chain(cfg, overrides=ov)
    return Manifest.load(run_dir / "data")


def test_slurm_executor_gives_the_local_result(slurm_cluster, tmp_path):  # noqa: F811
    local = run_data(tmp_path / "local")
    on_slurm = run_data(tmp_path / "slurm", "data.executor=slurm", "data.slurm.partition=cpu",
                        "data.slurm.poll_seconds=1", "data.slurm.time=00:10:00")
    assert on_slurm.status == "complete" and on_slurm.metrics["executor"] == "slurm"
    assert [(o["path"], o["sha256"]) for o in on_slurm.outputs] == [(o["path"], o["sha256"]) for o in local.outputs]
    same = ("docs_in", "docs_kept", "rejected_by_reason", "chars_kept", "pii_found", "sources", "licenses")
    assert {k: on_slurm.metrics[k] for k in same} == {k: local.metrics[k] for k in same}
    logs = tmp_path / "slurm" / "data" / "logs"
    assert len(list((logs / "split" / "completions").iterdir())) == 3  # one array task per datatrove task


def test_failed_slurm_pass_fails_the_stage(slurm_cluster, tmp_path):  # noqa: F811
    # A partition that does not exist: sbatch refuses, and the stage must say so, not hang.
    with pytest.raises(Exception, match="sbatch|partition|Slurm"):
        run_data(tmp_path / "bad", "data.executor=slurm", "data.slurm.partition=no_such_partition",
                 "data.slurm.poll_seconds=1")
    assert Manifest.load(tmp_path / "bad" / "data").status == "failed"
