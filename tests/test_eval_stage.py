"""The eval stage: perplexity per source, generations per stage, lm-eval on the shipped local task samples, report.

The fast tests need no model. The in-process test builds tiny random models in place of pretrain/sft/dpo final/
(seconds) on the real data/tokenizer/shards of the smoke recipe (the session fixture of test_train_stages) and runs
the stage through the pipeline with socket connections refused; the last test evaluates the really trained models.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT
from kgov_train.config.schema import CHAIN
from kgov_train.errors import ManifestError
from kgov_train.manifest import Manifest
from kgov_train.stages import STAGES
from tests.helpers import compose_cfg
from tests.chains import run_chain

EVAL = REPO_ROOT / "examples" / "eval"
TASKS = {"kgov_kobest_boolq_sample": EVAL / "tasks" / "kgov_kobest_boolq_sample.jsonl",
         "kgov_public_admin_mc_sample": EVAL / "tasks" / "kgov_public_admin_mc_sample.jsonl"}
PNG = b"\x89PNG\r\n\x1a\n"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def is_png(path: Path) -> bool:
    from PIL import Image

    with open(path, "rb") as f:
        if f.read(8) != PNG:
            return False
    with Image.open(path) as im:
        im.verify()
        return im.size[0] > 50 and im.size[1] > 50


# ---------------------------------------------------------------------------------------------------------------------
# No model needed
# ---------------------------------------------------------------------------------------------------------------------


def test_eval_is_the_last_stage_and_configurable():
    assert CHAIN[-1] == "eval" and not STAGES["eval"].distributed and "shards" in STAGES["eval"].needs
    cfg = compose_cfg(["recipe=smoke", "eval.limit=5", "eval.task_dirs=[/somewhere/kobest]"])
    assert cfg.eval.model_stage == "dpo" and cfg.eval.limit == 5 and list(cfg.eval.task_dirs) == ["/somewhere/kobest"]
    assert set(cfg.eval.tasks) == set(TASKS) and Path(cfg.eval.prompts).is_file()


def test_shipped_samples_and_prompts():
    from kgov_train.evaluation.generate import read_prompts

    assert 6 <= len(read_prompts(EVAL / "prompts.jsonl")) <= 12
    for name, data in TASKS.items():
        rows = jsonl(data)
        assert 20 <= len(rows) <= 40, name
        spec = yaml.safe_load((EVAL / "tasks" / f"{name}.yaml").read_text(encoding="utf-8"))
        assert spec["task"] == name and spec["dataset_path"] == "json"
        assert spec["dataset_kwargs"]["data_files"]["test"] == f"__TASK_DIR__/{data.name}"
    assert {r["label"] for r in jsonl(TASKS["kgov_kobest_boolq_sample"])} == {0, 1}
    mc = jsonl(TASKS["kgov_public_admin_mc_sample"])
    assert all(len(r["choices"]) == 4 and 0 <= r["answer"] < 4 for r in mc)
    assert {r["answer"] for r in mc} == {0, 1, 2, 3}


def test_task_folders_are_resolved_to_absolute_local_files(tmp_path):
    from kgov_train.evaluation.harness import resolve_task_dirs

    user = tmp_path / "my_kobest"
    user.mkdir()
    (user / "t.yaml").write_text("task: t\ndataset_kwargs:\n  data_files:\n    test: __TASK_DIR__/t.jsonl\n")
    (user / "utils.py").write_text("X = 1\n")
    (user / "t.jsonl").write_text("{}\n")
    out = resolve_task_dirs([EVAL / "tasks", user], tmp_path / "resolved")
    ours = yaml.safe_load((out[0] / "kgov_kobest_boolq_sample.yaml").read_text(encoding="utf-8"))
    assert Path(ours["dataset_kwargs"]["data_files"]["test"]) == TASKS["kgov_kobest_boolq_sample"].resolve()
    assert (out[1] / "t.yaml").read_text().count(str(user.resolve()) + "/t.jsonl") == 1
    assert (out[1] / "utils.py").is_file() and not (out[1] / "t.jsonl").exists()  # data stays where it is


def test_report_plots_and_tables_from_figures(tmp_path):
    from kgov_train.evaluation import report

    run = {"training": {"pretrain": {"steps": [1, 2, 3], "loss": [7.0, 6.0, 5.5], "final_loss": 5.5, "eval_loss": 5.6}},
           "data": {"docs_in": 11, "rejected_by_reason": {"duplicate_near": 1}, "docs_kept": 10, "docs_rejected": 1,
                    "chars_kept": 100},
           "tokenizer": {"ours": {"all": 2.1, "sources": {"a": 2.0, "b": 2.2}}}}
    ppl = {"dpo": {"all": {"perplexity": 12.5, "tokens": 9, "loss": 2.5, "windows": 1},
                   "sources": {"a": {"perplexity": 12.5, "tokens": 9, "loss": 2.5, "windows": 1}}}}
    bench = {"dpo": {"t1": {"acc": 0.5, "acc_norm": 0.25, "n": 4}}}
    images = report.plots(tmp_path, run, ppl, bench)
    assert set(images) == {"loss_curves.png", "data_funnel.png", "tokenizer_chars_per_token.png", "perplexity.png",
                           "lm_eval.png"}
    assert all(is_png(tmp_path / i) for i in images)
    md = report.markdown({"model_stage": "dpo", "models": {"dpo": "x"}, "stages": ["dpo"], "seq_len": 8,
                          "max_tokens_per_source": 10, "perplexity": ppl, "lm_eval": bench, "run": run,
                          "generations": [{"id": "p1", "prompt": "안녕?", "outputs": {"dpo": "네 | 안녕"}}]}, images)
    assert "| dpo | 12.5 | 12.5 | 9 |" in md and "0.5 / 0.25 (4)" in md and "rejected: duplicate_near" in md
    assert "네 \\| 안녕" in md and "![lm_eval](lm_eval.png)" in md


def test_missing_model_stage_is_refused_before_anything_runs(tmp_path):
    from kgov_train.stages.eval import external_inputs

    cfg = compose_cfg(["recipe=smoke", f"run_dir={tmp_path}"])
    with pytest.raises(ManifestError, match=r"stage 'eval' needs stage 'dpo' \(eval.model_stage\)"):
        external_inputs(cfg)


# ---------------------------------------------------------------------------------------------------------------------
# Tiny random models in place of the trained ones, real shards, through the pipeline, no network
# ---------------------------------------------------------------------------------------------------------------------


def _fake_finals(run_dir: Path, stages=("pretrain", "sft", "dpo")) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    for seed, stage in enumerate(stages):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
        final = run_dir / stage / "final"
        model.save_pretrained(final)
        tok.save_pretrained(final)
        (run_dir / stage / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": s, "loss": 7.0 - s / 10}) + "\n" for s in range(1, 6)))
        m = Manifest(stage=stage, fingerprint="fake", status="complete")
        m.save(run_dir / stage)


def check_eval_dir(run_dir: Path, stages: tuple[str, ...], limit: int | None = None) -> dict:
    out = run_dir / "eval"
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert m["status"] == "complete"
    listed = {o["path"] for o in m["outputs"]}
    for f in ("report.md", "report.json", "generations.jsonl", "lm_eval_results.json", "loss_curves.png",
              "perplexity.png", "lm_eval.png", "data_funnel.png"):
        assert f in listed and (out / f).is_file(), f
    assert all(is_png(out / p) for p in listed if p.endswith(".png"))
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    names = json.loads((run_dir / "shards" / "index.json").read_text())["sources"]
    assert rep["stages"] == list(stages)
    for stage in stages:
        p = rep["perplexity"][stage]
        assert set(p["sources"]) == set(names) and p["all"]["tokens"] > 0
        assert all(math.isfinite(f["perplexity"]) and f["perplexity"] > 1 for f in [p["all"], *p["sources"].values()])
        for task, data in TASKS.items():
            r = rep["lm_eval"][stage][task]
            assert 0.0 <= r["acc"] <= 1.0, (stage, task)
            assert r["n"] == (min(limit, len(jsonl(data))) if limit else len(jsonl(data))), (stage, task)
    gens = jsonl(out / "generations.jsonl")
    assert len(gens) == len(jsonl(EVAL / "prompts.jsonl"))
    assert all(set(g["outputs"]) == set(stages) for g in gens)
    assert {g["modes"].get("pretrain") for g in gens} <= {"plain", None}
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Validation perplexity" in md and "## Benchmarks" in md and "## Generations" in md
    assert all(stage in m["metrics"]["perplexity_by_stage"] for stage in stages)
    # bits per byte on the held-out corpus text, per source (scratch route: no base, so no change against it)
    assert m["metrics"]["bits_per_byte_vs_base"] == {} and rep["base"] is None
    for stage in stages:
        bpb = m["metrics"]["bits_per_byte_by_stage"][stage]
        assert set(bpb) == {f"heldout:{s}" for s in names}, stage
        assert all(math.isfinite(v) and v > 0 for v in bpb.values()), stage
    assert "## Bits per byte" in md and "bits_per_byte.png" in listed
    assert set(m["metrics"]["items_by_task"]) == set(TASKS)
    return rep


def test_eval_stage_in_process_without_network(upstream_run, tmp_path, no_network):
    run_dir = tmp_path / "run"
    for name in ("data", "tokenizer", "shards"):
        shutil.copytree(upstream_run / name, run_dir / name)
    _fake_finals(run_dir)
    overrides = ["recipe=smoke", f"run_dir={run_dir}", "sft_stages=null", "stages=[eval]", "eval.max_new_tokens=4",
                 "eval.limit=6"]
    run_chain(overrides)
    check_eval_dir(run_dir, ("pretrain", "sft", "dpo"), limit=6)
    # A rerun with the same models, prompts and tasks is skipped.
    before = json.loads((run_dir / "eval" / "manifest.json").read_text())["started_at"]
    run_chain(overrides)
    assert json.loads((run_dir / "eval" / "manifest.json").read_text())["started_at"] == before


# ---------------------------------------------------------------------------------------------------------------------
# The really trained models (the `trained` fixture of test_train_stages: about a minute of training)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_stage_on_trained_models(trained, no_network):
    run_chain([*trained.overrides, "stages=[eval]", "eval.max_new_tokens=16"])
    rep = check_eval_dir(trained.run_dir, ("pretrain", "sft", "dpo"))
    assert rep["run"]["training"]["pretrain"]["loss"] and rep["run"]["data"]["docs_in"] > 0
