"""Sweeps (`kgov-train -m`) and the stage cache: a 2×2 sweep of the smoke recipe's cheap stages through the real
CLI, each combination in its own run folder, identical stages computed once and filled from the cache in the other
runs, a tampered cache entry refused and the stage computed again, and `submit -m --dry-run` listing every job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from data_prep.hashing import sha256_file
from kgov_train.manifest import fingerprint, verify_outputs
from kgov_train.stage_cache import cache_key

STAGES = ("data", "tokenizer", "shards")
SWEEP = ["recipe=smoke", f"stages=[{','.join(STAGES)}]", "data.dedup.near=true,false",
         "shards.validation_fraction=0.1,0.2"]


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    return res


def manifest(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("sweep")
    cli(work, "-m", *SWEEP, f"hydra.sweep.dir={work / 'sweep'}")
    return work / "sweep"


def runs(sweep_dir: Path) -> list[Path]:
    return [Path(j["run_dir"]) for j in json.loads((sweep_dir / "sweep.json").read_text())["jobs"]]


def test_each_combination_runs_in_its_own_folder(sweep):
    jobs = json.loads((sweep / "sweep.json").read_text())["jobs"]
    assert [j["job"] for j in jobs] == [0, 1, 2, 3]
    assert [Path(j["run_dir"]) for j in jobs] == [sweep / str(i) for i in range(4)]
    combos = set()
    for job in jobs:
        run = Path(job["run_dir"])
        assert all(manifest(run / s)["status"] == "complete" for s in STAGES)
        near = manifest(run / "data")["config"]["data"]["dedup"]["near"]
        fraction = manifest(run / "shards")["config"]["shards"]["validation_fraction"]
        assert f"data.dedup.near={near}" in job["overrides"]
        assert f"shards.validation_fraction={fraction}" in job["overrides"]
        combos.add((near, fraction))
    assert len(combos) == 4


def test_identical_stages_are_computed_once(sweep):
    cache = sweep / ".stage-cache"
    for stage in STAGES:
        by_key = defaultdict(list)
        for run in runs(sweep):
            by_key[manifest(run / stage)["cache_key"]].append(run / stage)
        for key, dirs in by_key.items():
            computed = [d for d in dirs if manifest(d)["reused_from"] is None]
            assert len(computed) == 1, f"{stage} {key[:12]}: computed in {computed}"
            entry = cache / key
            assert verify_outputs(entry).cache_key == key
            for d in dirs:
                m = manifest(d)
                verify_outputs(d)  # every output re-hashes as sealed
                assert m["outputs"] == manifest(computed[0])["outputs"]  # the same files, the same hashes
                if d != computed[0]:
                    assert m["reused_from"]["entry"] == str(entry.resolve())
                    assert m["reused_from"]["stage_dir"] == str(computed[0].resolve())
                    assert m["reused_from"]["started_at"] == manifest(computed[0])["started_at"]
                    first = m["outputs"][0]["path"]
                    assert os.path.samefile(d / first, computed[0] / first)  # hard links, not copies
        # data: one per near setting; shards: every run differs (its config does); the tokenizer reads data's
        # outputs only (its config is the same): one per distinct corpus
        corpora = {json.dumps(manifest(r / "data")["outputs"], sort_keys=True) for r in runs(sweep)}
        assert len(by_key) == {"data": 2, "tokenizer": len(corpora), "shards": 4}[stage], stage
    assert len(corpora) == 2  # near-dedup changes the smoke corpus


def test_the_same_sweep_again_skips_every_stage(sweep):
    before = {r / s: manifest(r / s) for r in runs(sweep) for s in STAGES}
    cli(sweep.parent, "-m", *SWEEP, f"hydra.sweep.dir={sweep}")
    assert {r / s: manifest(r / s) for r in runs(sweep) for s in STAGES} == before


def test_a_tampered_cache_entry_is_refused_and_the_stage_recomputed(sweep, tmp_path):
    run0 = sweep / "0"
    key = manifest(run0 / "tokenizer")["cache_key"]
    entry = sweep / ".stage-cache" / key
    target = entry / "tokenizer.json"
    sealed = sha256_file(target)
    data = target.read_bytes()
    target.unlink()  # a new file: run 0's own copy (a hard link of the old one) stays as it was sealed
    target.write_bytes(data.replace(b'"', b"'", 1))
    solo = tmp_path / "solo"
    # outside a sweep: the cache is opt-in, cache_dir
    res = cli(tmp_path, "recipe=smoke", f"run_dir={solo}", "stages=[data,tokenizer]", "data.dedup.near=true",
              f"cache_dir={sweep / '.stage-cache'}")
    out = res.stdout + res.stderr
    assert "refused" in out and "tokenizer.json" in out and "differs" in out, out[-3000:]
    assert manifest(solo / "data")["reused_from"]["stage_dir"] == str((run0 / "data").resolve())
    m = manifest(solo / "tokenizer")
    assert m["reused_from"] is None and m["cache_key"] == key  # computed again, same key
    verify_outputs(run0 / "tokenizer")  # the run the entry came from is untouched
    fresh = verify_outputs(entry)  # the entry now holds the recomputed stage
    assert json.loads((entry / "cache.json").read_text())["stage_dir"] == str((solo / "tokenizer").resolve())
    assert {o["path"]: o["sha256"] for o in fresh.outputs}["tokenizer.json"] == sealed  # the stage is deterministic


def test_cache_key_leaves_out_the_run_folder():
    config = {"tokenizer": {"vocab_size": 1000}}

    def inputs(run: str) -> list[dict]:
        return [{"path": f"{run}/data/clean/00000.jsonl.gz", "sha256": "ab", "from_stage": "data"},
                {"path": "/corpus/a.txt", "sha256": "cd"}]

    assert cache_key(config, inputs("/a/run"), Path("/a/run")) == cache_key(config, inputs("/b/r2"), Path("/b/r2"))
    assert fingerprint(config, inputs("/a/run")) != fingerprint(config, inputs("/b/r2"))
    changed = inputs("/b/r2")
    changed[1]["sha256"] = "ce"
    assert cache_key(config, inputs("/a/run"), Path("/a/run")) != cache_key(config, changed, Path("/b/r2"))


def test_submit_multirun_dry_run_lists_every_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    res = cli(tmp_path, "submit", "-m", *SWEEP, f"hydra.sweep.dir={sweep_dir}", "cluster=dev_slurm_cpu", "--dry-run")
    out = res.stdout
    for job in range(4):
        assert f"<{job}:data> <{job}:tokenizer> <{job}:shards>" in out
        for i, stage in enumerate(STAGES):
            assert f"{sweep_dir}/{job}/slurm/{i:02d}-{stage}.sbatch" in out
        assert f"run_dir={sweep_dir}/{job} cache_dir={sweep_dir}/.stage-cache" in out
    # jobs 1 and 3 repeat the data and tokenizer stages of jobs 0 and 2: they wait for them, then reuse them
    assert "--dependency=afterany:<0:data> --kill-on-invalid-dep=yes " + f"{sweep_dir}/1/slurm/00-data.sbatch" in out
    assert f"--dependency=afterok:<3:data>,afterany:<2:tokenizer> --kill-on-invalid-dep=yes {sweep_dir}/3/" in out
    assert "afterany:<0:shards>" not in out and "afterany:<2:shards>" not in out  # shards differ in every job
    assert out.count("# sbatch --parsable") == 12
    assert not (sweep_dir / "sweep.json").exists() and not (sweep_dir / "0" / "slurm").exists()


def test_a_sweep_over_an_eval_key_trains_once(tmp_path):
    """Training stages go through the cache too: the parent plans (a hit starts no torchrun), the torchrun child's
    rank 0 publishes what it trained. A 2-step pretrain keeps it to ~20 s."""
    sweep_dir = tmp_path / "sweep"
    res = cli(tmp_path, "-m", "recipe=smoke", "stages=[data,tokenizer,shards,pretrain]", "pretrain.max_steps=2",
              "pretrain.save_steps=2", "pretrain.eval_sequences=4", "eval.max_new_tokens=32,64",
              f"hydra.sweep.dir={sweep_dir}")
    assert (res.stdout + res.stderr).count("torch.distributed.run") == 1  # job 1 starts no training at all
    first, second = sweep_dir / "0", sweep_dir / "1"
    for stage in ("data", "tokenizer", "shards", "pretrain"):
        assert manifest(first / stage)["reused_from"] is None
        assert manifest(second / stage)["reused_from"]["stage_dir"] == str((first / stage).resolve())
        assert manifest(second / stage)["outputs"] == manifest(first / stage)["outputs"]
    weights = next(o["path"] for o in manifest(second / "pretrain")["outputs"] if o["path"].startswith("final/"))
    assert os.path.samefile(first / "pretrain" / weights, second / "pretrain" / weights)
    assert (first / "pretrain" / "checkpoints").exists() and not (second / "pretrain" / "checkpoints").exists()


def test_compare_on_the_sweep_shows_exactly_the_swept_keys(sweep, tmp_path):
    from kgov_train.compare import compare

    report, out = compare([sweep], out=tmp_path / "compare")
    assert sorted(report["runs"]) == ["0", "1", "2", "3"]
    assert set(report["differences"]) == {"data.dedup.near", "shards.validation_fraction"}, report["differences"]
    by_run = {name: (d["data.dedup.near"][name], d["shards.validation_fraction"][name])
              for d in [report["differences"]] for name in report["runs"]}
    assert len(set(by_run.values())) == 4 and (out / "compare.md").is_file()
