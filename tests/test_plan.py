"""`kgov-train plan`: parameter count vs transformers, model states vs DeepSpeed's estimators, activations, CLI."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT
from kgov_train.planner import memory as M
from kgov_train.planner.report import Settings, make_plan, render, shape_of
from tests.helpers import compose_cfg

A100 = ["cluster=a100_80g_multi_node"]


def cfg_for(*overrides: str):
    has_recipe = any(o.startswith("recipe=") for o in overrides)
    return compose_cfg(list(overrides) if has_recipe else ["~recipe", *overrides])


@pytest.mark.parametrize("overrides", [
    ["model=tiny"], ["model=125m"], ["model=1b"], ["model=7b"], ["model=13b"],
    ["model=tiny", "model.tie_word_embeddings=true", "tokenizer.vocab_size=2000"],  # smoke's tokenizer, tied
    ["recipe=kgov_7b"],  # vocab 64000
])
def test_param_count_matches_transformers(overrides):
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = cfg_for(*overrides)
    shape = shape_of(cfg)
    m = cfg.model
    config = LlamaConfig(vocab_size=shape.vocab, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                         num_hidden_layers=m.num_hidden_layers, num_attention_heads=m.num_attention_heads,
                         num_key_value_heads=m.num_key_value_heads or m.num_attention_heads,
                         tie_word_embeddings=m.tie_word_embeddings)
    with torch.device("meta"):  # shapes only: a 13B model in milliseconds, no memory
        model = LlamaForCausalLM(config)
    assert shape.params == sum(p.numel() for p in model.parameters())  # shared (tied) weights counted once
    # What DeepSpeed's model_to_params calls the largest layer: parameters of one module, not recursing.
    assert shape.largest_layer_params == max(sum(p.numel() for p in mod.parameters(recurse=False))
                                             for mod in model.modules())


def _deepspeed_table(fn, *args) -> list[tuple[float, str]]:
    """(per-GPU GiB, options) rows of an estimate_*_all_cold printout (they print; they return nothing)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fn(*args)
    rows = re.findall(r"^\s*[\d.]+GB \|\s*([\d.]+)GB \| (.+)$", buf.getvalue(), re.M)
    assert rows, buf.getvalue()
    return [(float(gpu), opts) for gpu, opts in rows]


@pytest.mark.parametrize("model", ["7b", "13b"])
def test_model_states_agree_with_deepspeed_estimators(model):
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs_all_cold
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs_all_cold

    worst = 0.0
    for vocab_recipe in ([], ["recipe=kgov_7b"]):  # vocab 32000 (default tokenizer) and the 7B recipe's 64000
        cfg = cfg_for(*vocab_recipe, f"model={model}", *A100)
        for nodes in (1, 4, 16):
            cfg.nnodes = nodes
            plan = make_plan(cfg)
            ours = {(r["stage"], r["offload_optimizer"], r["offload_param"]): r["model_states_gib"]
                    for r in plan["options"]}
            P, L = plan["params"], plan["largest_layer_params"]
            for gib, opts in _deepspeed_table(estimate_zero2_model_states_mem_needs_all_cold, P, 8, nodes):
                key = (2, "offload_optimizer=none" not in opts, False)
                worst = max(worst, abs(ours[key] / gib - 1))
                assert ours[key] == pytest.approx(gib, rel=0.10), (model, nodes, opts)
            for gib, opts in _deepspeed_table(estimate_zero3_model_states_mem_needs_all_cold, P, L, 8, nodes):
                key = (3, "offload_optimizer=none" not in opts, "offload_param=none" not in opts)
                worst = max(worst, abs(ours[key] / gib - 1))
                assert ours[key] == pytest.approx(gib, rel=0.10), (model, nodes, opts)
    print(f"{model}: worst relative difference to DeepSpeed's estimators {worst:.1%}")


def test_activations_checkpointing_batch_and_max_micro_batch():
    shape = shape_of(cfg_for("model=7b"))
    for score in (False, True):
        one, ckpt = (M.activation_bytes(shape, 4096, 1, ck, score) for ck in (False, True))
        assert ckpt < one / 3  # a 32-layer model keeps 2*s*h per layer instead of ~34*s*h
        for b in (2, 3, 8):
            assert M.activation_bytes(shape, 4096, b, False, score) == b * one
            assert M.activation_bytes(shape, 4096, b, True, score) == b * ckpt
    eager = M.activation_bytes(shape, 4096, 1, False, True) - M.activation_bytes(shape, 4096, 1, False, False)
    assert eager == 5 * shape.heads * 4096 ** 2 * shape.layers  # the score term SDPA/flash never materialise

    mem = 80 * M.GIB
    for nodes in (1, 4):
        for opt in M.OPTIONS:
            states = M.model_states(shape.params, shape.largest_layer_params, 8 * nodes, opt)
            for ck in (False, True):
                per_seq = M.activation_bytes(shape, 4096, 1, ck, False)
                bmax = M.max_micro_batch(states, per_seq, mem)
                for b in range(1, bmax + 3):
                    assert (M.total_bytes(states, b * per_seq) <= mem) == (b <= bmax), (opt, ck, b, bmax)


def test_plan_rows_consistent_and_linear_in_micro_batch():
    rows = {}
    for b in (1, 2, 4):
        plan = make_plan(cfg_for("recipe=kgov_7b", f"pretrain.micro_batch_size={b}"))
        rows[b] = plan["options"]
        for r in plan["options"]:
            for tag in ("", "_ckpt"):
                assert r[f"fits{tag}"] == (b <= r[f"max_micro_batch{tag}"]), (r["option"], b)
                assert r[f"total{tag}_gib"] >= r["model_states_gib"] + plan["overhead_gib"]
            assert r["activations_ckpt_gib"] < r["activations_gib"]
    for i, r in enumerate(rows[4]):
        assert r["activations_gib"] == pytest.approx(4 * rows[1][i]["activations_gib"])
        assert r["activations_ckpt_gib"] == pytest.approx(2 * rows[2][i]["activations_ckpt_gib"])
    # The partitioning order of ZeRO: each stage holds less than the one before.
    peaks = [r["model_states_gib"] for r in rows[4]]
    assert peaks[0] > peaks[1] > peaks[2] > peaks[4] and peaks[2] > peaks[3] and peaks[4] > peaks[5] > peaks[6]
    assert plan["recipe_option"] == "ZeRO-3"


def test_compute_budget_and_time():
    cfg = cfg_for("model=7b", *A100, "nnodes=4")
    plan = make_plan(cfg)
    (run,) = plan["runs"]
    assert run["budget"] == "chinchilla" and run["tokens"] == 20 * plan["params"]
    flops = run["tokens"] * plan["flops_per_token"]
    assert run["gpu_hours"] == pytest.approx(flops / (312e12 * 0.40) / 3600)
    assert run["days"] == pytest.approx(run["gpu_hours"] / 32 / 24)
    slow = make_plan(cfg, Settings(mfu=0.2))["runs"][0]
    assert slow["gpu_hours"] == pytest.approx(2 * run["gpu_hours"])
    # The pretrain stage's own count (its mfu metric), so plan.mfu means the same: 6*N + 6*L*s*h.
    assert plan["flops_per_token"] == 6 * plan["params"] + 6 * 32 * 2048 * 4096

    with_tokens = make_plan(cfg_for("model=7b", *A100, "nnodes=4", "pretrain.tokens=1000000000000"))
    assert [r["budget"] for r in with_tokens["runs"]] == ["pretrain.tokens", "chinchilla"]
    assert with_tokens["runs"][0]["tokens"] == 10 ** 12
    batch = make_plan(cfg_for("model=7b", *A100, "nnodes=4", "pretrain.global_batch_tokens=4194304"))
    assert batch["runs"][0]["steps"] == -(-batch["runs"][0]["tokens"] // 4194304)


def test_cpu_profile_prints_compute_only():
    plan = make_plan(cfg_for("model=125m", "cluster=local_cpu"))
    assert plan["options"] == []
    text = render(plan)
    assert "has no accelerator memory" in text and "Chinchilla budget" in text and "ZeRO" not in text


def run_cli(*args: str, python: tuple[str, ...] = ()) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *python, "-m", "kgov_train.cli", "plan", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)


def test_cli_end_to_end():
    # All at once: each is mostly interpreter start-up.
    good = run_cli("model=7b", "cluster=a100_80g_multi_node", "nnodes=4")
    bad = run_cli("model=7b", "model.foo=1")
    light = run_cli("model=7b", "cluster=local_cpu", python=("-X", "importtime"))
    out, err = good.communicate(timeout=60)
    assert good.returncode == 0, err
    for opt in M.OPTIONS:
        assert re.search(rf"^{re.escape(opt.label)} .*\|.*\|.*\|", out, re.M), opt.label
    assert "Chinchilla budget: 134.77B tokens" in out and "32 GPUs" in out and "GPU-hours" in out

    out, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and out == ""
    assert err.strip() == "kgov-train plan: model.foo: Key 'foo' not in 'ModelConfig'"

    out, err = light.communicate(timeout=60)
    assert light.returncode == 0 and "no accelerator memory" in out and "Chinchilla budget" in out
    heavy = re.findall(r"\|\s+(torch|deepspeed|transformers)$", err, re.M)
    assert not heavy, f"plan imported {heavy}"


@pytest.mark.parametrize("args, key", [
    (["model=7b", "model.hidden_sise=4096"], "model.hidden_sise"),
    (["model=7b", "plan.mfuu=0.3"], "plan.mfuu"),
    (["model=7b", "nnodes=0"], "nnodes"),
    (["model=7b", "plan.mfu=1.5"], "plan.mfu"),
    (["model=70b"], "model/70b"),
])
def test_cli_bad_key_one_line(args, key, capsys):
    from kgov_train.planner.cli import main

    compose_cfg(["~recipe"])  # the CLI's _setup (resolvers, schema)
    assert main([*args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and key in err and "Traceback" not in err, err
