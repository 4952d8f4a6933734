"""The chain's make-like contract: skip when complete, rerun on change or force,
refuse missing or tampered upstream artifacts. Exercised on the cheap data stage."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kgov_train.errors import ManifestError
from kgov_train.launch import stage_env
from kgov_train.manifest import Manifest
from kgov_train.pipeline import run_chain
from tests.helpers import compose_cfg


def run(tmp_path: Path, *overrides: str):
    ov = ["recipe=smoke", f"run_dir={tmp_path}", "data.tasks=1", "data.workers=1", *overrides]
    return run_chain(compose_cfg(ov), ov)


def test_skip_when_complete_rerun_on_change_and_force(tmp_path):
    first = run(tmp_path, "stages=[data]")[0]
    assert first.status == "complete"
    again = run(tmp_path, "stages=[data]")[0]
    assert again.started_at == first.started_at and again.fingerprint == first.fingerprint  # skipped

    changed = run(tmp_path, "stages=[data]", "data.min_chars=10")[0]
    assert changed.fingerprint != first.fingerprint
    assert Manifest.load(tmp_path / "data").config["data"]["min_chars"] == 10

    forced = run(tmp_path, "stages=[data]", "data.min_chars=10", "force=true")[0]
    assert forced.fingerprint == changed.fingerprint and forced.ended_at >= changed.ended_at
    assert forced.wall_seconds is not None


def test_manifest_records_inputs_outputs_versions(tmp_path):
    m = run(tmp_path, "stages=[data]")[0]
    raw = json.loads((tmp_path / "data" / "manifest.json").read_text())
    for key in ("stage", "status", "config", "inputs", "outputs", "metrics", "versions", "git_commit",
                "started_at", "ended_at"):
        assert key in raw, key
    assert len(m.inputs) == 11 and all(len(i["sha256"]) == 64 for i in m.inputs)
    assert {"python", "datatrove", "hydra-core"} <= set(m.versions)
    assert all((tmp_path / "data" / o["path"]).is_file() for o in m.outputs)


def test_missing_upstream_is_refused_by_the_cli(tmp_path):
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", "recipe=smoke", f"run_dir={tmp_path}",
                          "stages=[tokenizer]"], capture_output=True, text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 1
    assert "stage 'tokenizer' needs stage 'data'" in out and "run stage 'data' first" in out
    assert "Traceback" not in out


def test_tampered_upstream_output_is_refused(tmp_path):
    run(tmp_path, "stages=[data]")
    clean = sorted((tmp_path / "data" / "clean").iterdir())[0]
    with gzip.open(clean, "at", encoding="utf-8") as f:
        f.write(json.dumps({"id": "smuggled", "text": "검증되지 않은 문서"}, ensure_ascii=False) + "\n")
    with pytest.raises(ManifestError, match=r"sha256 .* differs .* sealed in .*data/manifest.json"):
        run(tmp_path, "stages=[tokenizer]")


def test_new_upstream_clears_a_stage_folder(tmp_path):
    run(tmp_path, "stages=[data,tokenizer]")
    marker = tmp_path / "tokenizer" / "stale.txt"
    marker.write_text("left from the old corpus")
    run(tmp_path, "stages=[data,tokenizer]", "data.min_chars=2000")  # drops two bills: tokenizer inputs change
    assert not marker.exists()
    assert Manifest.load(tmp_path / "tokenizer").status == "complete"


def test_each_venv_builds_deepspeed_ops_in_its_own_cache(monkeypatch):
    """Two venvs sharing torch's one cache folder rebuild each other's JIT ops at every switch (launch.ops_cache_env)."""
    cfg = compose_cfg(["recipe=smoke", "run_dir=/tmp/x"])
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setattr(sys, "prefix", "/opt/venv-a")
    a = stage_env(cfg, "pretrain")["TORCH_EXTENSIONS_DIR"]
    monkeypatch.setattr(sys, "prefix", "/opt/venv-b")
    b = stage_env(cfg, "pretrain")["TORCH_EXTENSIONS_DIR"]
    assert a != b and Path(a).parent == Path(b).parent
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/scratch/ops")  # the user's choice wins
    assert stage_env(cfg, "pretrain")["TORCH_EXTENSIONS_DIR"] == "/scratch/ops"
