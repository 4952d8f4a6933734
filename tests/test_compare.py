"""`kgov-train compare`: two real run folders (the smoke recipe's data and tokenizer stages, one key changed) and a
sweep folder built from copies of them with hand-written training and eval stages (see _fake_training)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kgov_train.compare import CompareError, compare
from kgov_train.compare.cli import main
from kgov_train.compare.gather import find_runs
from kgov_train.run_folder import read_manifest
from tests.chains import kgov
from tests.helpers import REPO_ROOT


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")


def _fake_training(run_dir: Path, lr: float, with_eval: bool) -> None:
    """Hand-written (not trained: that takes minutes) manifests, metrics.jsonl and eval/report.json in the layout
    the stages write: pretrain and dpo, and eval when asked. pretrain's config holds a path inside the run folder,
    which must not count as a difference."""
    common = {"deepspeed": {"zero_optimization": {"stage": 2}}, "seed": 42, "cluster.precision": "fp32"}
    stages = {
        "pretrain": ({"pretrain": {"learning_rate": lr, "max_steps": 4, "resume_from": f"{run_dir}/pretrain/ckpt"},
                      "model": {"name": "tiny", "hidden_size": 64}, **common},
                     {"steps": 4, "tokens_seen": 2048, "parameters": 1000, "world_size": 2, "final_loss": 5.0 + lr,
                      "validation_loss": 5.5}),
        "dpo": ({"dpo": {"beta": 0.1}, **common},
                {"steps": 2, "tokens_seen": 512, "parameters": 1000, "world_size": 2, "final_loss": 0.6,
                 "held_out": {"pairs": 8, "logp_accuracy_before": 0.5, "logp_accuracy": 0.75}}),
    }
    for stage, (config, metrics) in stages.items():
        _write(run_dir / stage / "manifest.json", {"stage": stage, "status": "complete", "config": config,
                                                    "metrics": metrics, "wall_seconds": 10.0})
        rows = [{"step": s, "loss": 6.0 - s * (1 + 100 * lr)} for s in range(1, metrics["steps"] + 1)]
        (run_dir / stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if with_eval:
        _write(run_dir / "eval" / "manifest.json", {"stage": "eval", "status": "complete",
                                                    "config": {"eval": {"model_stage": "dpo"}}})
        _write(run_dir / "eval" / "report.json", {
            "model_stage": "dpo", "perplexity": {"dpo": {"all": {"perplexity": 40.0, "tokens": 100}, "sources": {}}},
            "bits_per_byte": {"dpo": {"validation": {"bits_per_byte": 1.25}, "kowiki": {"bits_per_byte": 1.5}}},
            "lm_eval": {"dpo": {"ko_quiz": {"acc": 0.4, "acc_norm": 0.45, "n": 20}}},
            "benchmarks": {"dpo": {"kmmlu": {"score": {"acc": 0.31}, "macro": {"acc": 0.29}, "tasks": {}}}}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """a, b: real data+tokenizer runs with tokenizer.vocab_size 1000 and 1500. sweep/0 (a + training + eval),
    sweep/2 (b + training with another learning rate, no eval), sweep/10/run (a, nested a level deeper)."""
    root = tmp_path_factory.mktemp("compare")
    a, b = root / "a", root / "b"
    kgov(a, "stages=[data,tokenizer]", "tokenizer.vocab_size=1000")
    kgov(b, "stages=[data,tokenizer]", "tokenizer.vocab_size=1500")
    sweep = root / "sweep"
    for src, dst in ((a, sweep / "0"), (b, sweep / "2"), (a, sweep / "10" / "run")):
        shutil.copytree(src, dst)
    _fake_training(sweep / "0", 1e-3, with_eval=True)
    _fake_training(sweep / "2", 2e-3, with_eval=False)
    (sweep / ".hydra").mkdir()  # Hydra's own files beside the jobs: not runs
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (root / "empty").mkdir()
    return {"a": a, "b": b, "sweep": sweep, "empty": root / "empty"}


def test_two_real_runs_show_exactly_the_changed_key(runs):
    report, out = compare([runs["a"], runs["b"]])
    assert out == runs["a"].parent / "compare"
    assert list(report["runs"]) == ["a", "b"]
    assert report["differences"] == {"tokenizer.vocab_size": {"a": 1000, "b": 1500}}
    for name in ("a", "b"):
        run = report["runs"][name]
        dm = read_manifest(runs[name] / "data")["metrics"]
        assert run["data"]["docs_in"] == dm["docs_in"] and run["data"]["docs_kept"] == dm["docs_kept"]
        assert run["data"]["rejected_by_reason"] == dm["rejected_by_reason"]
        tm = read_manifest(runs[name] / "tokenizer")["metrics"]
        assert run["tokenizer"]["heldout_chars_per_token"] == tm["heldout_chars_per_token"] > 0
        assert run["eval"] is None and "eval: missing" in run["notes"]
    assert report["runs"]["a"]["tokenizer"]["heldout_chars_per_token"] \
        != report["runs"]["b"]["tokenizer"]["heldout_chars_per_token"]
    md = (out / "compare.md").read_text(encoding="utf-8")
    assert "| `tokenizer.vocab_size` | 1000 | 1500 |" in md and "eval: missing" in md
    assert f"| documents in | {dm['docs_in']} | {dm['docs_in']} |" in md
    assert json.loads((out / "compare.json").read_text())["differences"] == report["differences"]
    assert report["plots"] == []  # no training stage: no loss curves


def test_sweep_folder(runs, tmp_path):
    assert find_runs([runs["sweep"]]) == [(runs["sweep"] / n).resolve() for n in ("0", "2", "10/run")]
    report, out = compare([runs["sweep"]], out=tmp_path / "cmp")
    assert out == tmp_path / "cmp" and list(report["runs"]) == ["0", "2", "10/run"]
    # the run folder's own path in pretrain's config is no difference; 10/run has no pretrain to differ
    assert report["differences"] == {"pretrain.learning_rate": {"0": 1e-3, "2": 2e-3},
                                     "tokenizer.vocab_size": {"0": 1000, "2": 1500, "10/run": 1000}}
    r0, r2, r10 = report["runs"].values()
    assert r0["notes"] == [] and r0["eval"]["bits_per_byte"]["dpo"] == {"validation": 1.25, "kowiki": 1.5}
    assert r0["training"]["pretrain"]["training_flops"] == 6.0 * 1000 * 2048  # as the papers estimate it
    assert r0["training"]["dpo"]["held_out.logp_accuracy"] == 0.75
    assert r2["eval"] is None and r2["notes"] == ["eval: missing"]
    assert r10["notes"] == ["pretrain: missing", "dpo: missing", "eval: missing"] and r10["training"] == {}
    assert set(report["plots"]) == {"loss_pretrain.png", "loss_dpo.png", "bits_per_byte.png"}
    assert all((out / p).stat().st_size > 1000 for p in report["plots"])
    md = (out / "compare.md").read_text(encoding="utf-8")
    assert "| pretrain: final loss | 5.001 | 5.002 | — |" in md
    assert "| dpo / validation | 1.25 | — | — |" in md and "| dpo / ko_quiz (acc) | 0.4 | — | — |" in md
    assert "| dpo / kmmlu (acc) | 0.31 | — | — |" in md and "| dpo / kmmlu (macro) | 0.29 | — | — |" in md
    assert "![loss_pretrain](loss_pretrain.png)" in md


def test_an_incomplete_stage_is_listed(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["sweep"] / "0", run)
    m = json.loads((run / "eval" / "manifest.json").read_text())
    _write(run / "eval" / "manifest.json", {**m, "status": "failed"})
    (run / "eval" / "report.json").write_text("{cut short")
    report, _ = compare([run, runs["sweep"] / "0"], out=tmp_path / "cmp")
    failed, complete = report["runs"].values()  # named by their paths below the common parent
    assert failed["notes"] == ["eval: failed", f"{run / 'eval' / 'report.json'}: not valid JSON "
                               "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
                               "eval: no readable report.json"]
    assert failed["eval"] is None and failed["training"]["pretrain"]["final_loss"] == 5.001
    assert complete["notes"] == [] and complete["eval"]["lm_eval"]["dpo"]["ko_quiz"]["acc"] == 0.4


def test_errors_name_the_path(runs, tmp_path, capsys):
    with pytest.raises(CompareError, match=str(runs["empty"])):
        compare([runs["a"], runs["empty"]])
    assert main([str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err
    assert main(["--bogus", str(runs["a"])]) == 2
    assert main([]) == 2


def test_cli(runs, tmp_path):
    cmd = [sys.executable, "-m", "kgov_train.cli", "compare"]
    res = subprocess.run(cmd + [str(runs["a"]), str(runs["b"]), "--json", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["differences"] == {"tokenizer.vocab_size": {"a": 1000, "b": 1500}}
    assert (tmp_path / "o" / "compare.md").is_file()
    res = subprocess.run(cmd + [str(runs["empty"])], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{runs['empty']}: not a run folder" in res.stderr
