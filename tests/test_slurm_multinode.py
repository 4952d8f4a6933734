"""Two Slurm nodes on this machine (scripts/dev_slurm_cluster.sh --nodes 2: each slurmd in its own network and UTS
namespace, the nodes on a bridge): a pretrain of one process per node, whose torchrun rendezvous and gloo traffic
cross the nodes' network, gives the per-step losses of a one-node two-process run; and `down` leaves nothing behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.slurm_cluster import SCRIPT, _slurm_env, slurm, wait_for_job
from tests.chains import manifest, metrics_rows, run_chain

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
STEPS = 16
HOSTS_MARK = "# kgov-dev-slurm node"


def _copy_upstream(upstream: Path, run_dir: Path) -> Path:
    for name in ("data", "tokenizer", "shards"):
        shutil.copytree(upstream / name, run_dir / name)
    return run_dir


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def test_each_node_has_its_own_hostname_address_and_network_namespace(slurm_cluster_2nodes):
    cluster = slurm_cluster_2nodes
    assert cluster.nodes == ("kgov-n1", "kgov-n2") and cluster.ifname == "kgov0"
    show = f"echo $(hostname) $(ip -o -4 addr show {cluster.ifname} | awk '{{print $4}}') $(readlink /proc/self/ns/net)"
    out = slurm("srun", "-N2", "--ntasks-per-node=1", "-l", "bash", "-c", show, timeout=120).stdout
    rows = sorted(line.split(": ", 1)[1].split() for line in out.splitlines() if ": " in line)
    assert [r[0] for r in rows] == list(cluster.nodes), out
    assert [r[1].rsplit(".", 1)[1] for r in rows] == ["11/24", "12/24"], out  # $KGOV_SLURM_NET.11 and .12
    assert rows[0][1].rsplit(".", 1)[0] == rows[1][1].rsplit(".", 1)[0], out
    assert len({r[2] for r in rows} | {os.readlink("/proc/self/ns/net")}) == 3, out  # two namespaces, neither ours


def test_two_node_pretrain_matches_one_node_two_processes(slurm_cluster_2nodes, upstream_run, tmp_path):
    """ZeRO-2 over gloo, 1 process on each of two nodes, vs 2 processes on this machine without Slurm: the same
    world size and the same data order, so the same losses, step for step."""
    cluster = slurm_cluster_2nodes
    common = ["recipe=smoke", "stages=[pretrain]", f"pretrain.max_steps={STEPS}", "pretrain.save_steps=1000",
              "pretrain.eval_sequences=0", "pretrain.zero_stage=2"]
    run_dir = _copy_upstream(upstream_run, tmp_path / "two_nodes")
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", "submit", *common, f"run_dir={run_dir}",
                          "cluster=dev_slurm_cpu_2node", "nnodes=2", "nproc_per_node=1"],
                         capture_output=True, text=True, timeout=120, env=_slurm_env())
    assert res.returncode == 0, res.stderr
    job = res.stdout.strip().splitlines()[-1].split()[-1]
    state = wait_for_job(job, timeout=600)
    two_nodes_s = time.monotonic() - t0
    log = "\n".join(p.read_text(errors="replace") for p in (run_dir / "slurm").glob("pretrain-*.out"))
    assert state == "COMPLETED", log[-4000:]
    script = next((run_dir / "slurm").glob("*-pretrain.sbatch")).read_text()
    assert "#SBATCH --nodes=2" in script and f"export GLOO_SOCKET_IFNAME={cluster.ifname}" in script

    # one torchrun (one rank) per node, each on its own host; rank 0 saw its node's hostname too
    ran_on = dict(re.findall(r"^\[kgov\] node (\d+) of 2: torchrun on (\S+)$", log, re.M))
    assert ran_on == {"0": cluster.nodes[0], "1": cluster.nodes[1]}, log[:3000]
    assert f"rendezvous {cluster.nodes[0]}:" in log
    stage = run_dir / "pretrain"
    m = manifest(stage)
    assert m["status"] == "complete" and m["host"] == cluster.nodes[0]
    assert m["metrics"]["world_size"] == 2 and m["metrics"]["zero_stage"] == 2

    # the reference: 2 processes on this machine, no Slurm
    ref = _copy_upstream(upstream_run, tmp_path / "one_node")
    t0 = time.monotonic()
    run_chain([*common, f"run_dir={ref}", "nproc_per_node=2"])
    one_node_s = time.monotonic() - t0
    rows, ref_rows = metrics_rows(stage), metrics_rows(ref / "pretrain")
    assert [r["step"] for r in rows] == [r["step"] for r in ref_rows] == list(range(1, STEPS + 1))
    diff = max(abs(a["loss"] - b["loss"]) for a, b in zip(rows, ref_rows))
    print(f"two nodes x 1 process (Slurm) {two_nodes_s:.1f}s, one node x 2 processes {one_node_s:.1f}s; "
          f"max |loss difference| over {STEPS} steps: {diff:.2e}")
    for a, b in zip(rows, ref_rows):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4), a["step"]


def test_down_removes_everything_and_up_twice_changes_nothing(slurm_cluster_2nodes):
    """Last in the module: `down` (twice) leaves no daemon, namespace, veth, bridge or /etc/hosts line; a second `up`
    keeps the running daemons."""
    run = Path(_script("env").stdout.split("KGOV_SLURM_ROOT=", 1)[1].split()[0]) / "run"
    nodes = slurm_cluster_2nodes.nodes
    pids = [int((run / f"slurmd-{n}.pid").read_text()) for n in nodes] + [int((run / "slurmctld.pid").read_text())]
    for _ in range(2):
        res = _script("down")
        assert res.returncode == 0, res.stderr
        assert not list(Path("/run/netns").glob("kgov-n*"))
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        assert "kgovbr0" not in links and "kgov-n" not in links, links
        assert HOSTS_MARK not in Path("/etc/hosts").read_text()
        assert _script("status").returncode != 0
        assert not [p for p in pids if Path(f"/proc/{p}").exists()], "daemons still running"
    res = _script("--nodes", "2", "up")
    assert res.returncode == 0, res.stderr
    slurmds = {n: (run / f"slurmd-{n}.pid").read_text().strip() for n in nodes}
    again = _script("up")  # no --nodes: the configured two-node cluster
    assert again.returncode == 0 and "already up" in again.stdout, again.stdout + again.stderr
    assert {n: (run / f"slurmd-{n}.pid").read_text().strip() for n in nodes} == slurmds
    one = _script("--nodes", "1", "up")  # another size while this one is up: refused, nothing touched
    assert one.returncode != 0 and "down' first" in one.stderr
    assert _script("status").returncode == 0
