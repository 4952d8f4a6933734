"""`kgov-train plan`: parameter count vs transformers, model states vs DeepSpeed's estimators, activations, CLI;
LoRA/QLoRA: adapter count vs peft, method and ZeRO ordering, the QLoRA paper's published figures."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT
from kgov_train.errors import RecipeError
from kgov_train.planner import lora as LO
from kgov_train.planner import memory as M
from kgov_train.planner.model import Shape
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


# --- LoRA and QLoRA (pretrain.lora) ------------------------------------------------------------------------------------

LORA = ["pretrain.lora.enabled=true"]
QLORA = [*LORA, "pretrain.lora.qlora=true"]
# LLaMA-1 shapes (Touvron et al. 2023, table 2; vocab 32000), the models of the QLoRA paper.
LLAMA_7B = Shape(vocab=32000, hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=32)
LLAMA_65B = Shape(vocab=32000, hidden=8192, intermediate=22016, layers=80, heads=64, kv_heads=64)
GUANACO = LO.Adapter(r=64, qlora=True, dropout=0.05)  # QLoRA paper, appendix B: r 64 on every linear layer


@pytest.mark.parametrize("overrides, targets, to_save", [
    (["model=tiny"], LO.LAYER_LINEARS, ()),
    (["model=tiny"], ("q_proj", "v_proj"), ("embed_tokens", "lm_head")),  # GQA k/v; a vocabulary extension
    (["model=tiny", "model.tie_word_embeddings=true", "tokenizer.vocab_size=2000"],
     ("k_proj", "o_proj", "down_proj", "embed_tokens"), ()),
    (["model=tiny", "model.num_hidden_layers=3"], ("gate_proj", "up_proj"), ("norm", "input_layernorm")),
])
def test_adapter_params_match_peft(overrides, targets, to_save):
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = cfg_for(*overrides)
    shape, m = shape_of(cfg), cfg.model
    config = LlamaConfig(vocab_size=shape.vocab, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                         num_hidden_layers=m.num_hidden_layers, num_attention_heads=m.num_attention_heads,
                         num_key_value_heads=m.num_key_value_heads or m.num_attention_heads,
                         tie_word_embeddings=m.tie_word_embeddings)
    torch.manual_seed(0)
    model = peft.get_peft_model(LlamaForCausalLM(config), peft.LoraConfig(
        r=8, lora_alpha=16, target_modules=list(targets), modules_to_save=list(to_save) or None))
    trainable, everything = model.get_nb_trainable_parameters()
    ad = LO.Adapter(r=8, targets=targets, modules_to_save=to_save)
    assert LO.trainable_params(shape, ad) == trainable
    assert everything - trainable == shape.params  # the frozen base: modules_to_save keep their original
    assert LO.largest_trainable_module(shape, ad) == max(
        sum(p.numel() for p in mod.parameters(recurse=False) if p.requires_grad) for mod in model.modules())


def test_lora_rows_qlora_below_lora_below_full_and_zero3_partitions_the_base():
    for model in ("7b", "13b"):
        plans = {name: make_plan(cfg_for("recipe=kgov_7b", f"model={model}", "nnodes=1", *extra))
                 for name, extra in (("full", []), ("lora", LORA), ("qlora", QLORA))}
        assert [p["method"] for p in plans.values()] == ["full", "lora", "qlora"]
        P, T = plans["full"]["params"], plans["lora"]["trainable_params"]
        assert T == plans["qlora"]["trainable_params"] < P / 100
        rows = {name: {r["option"]: r for r in p["options"]} for name, p in plans.items()}
        for opt in M.OPTIONS:  # with activation checkpointing, as the recipe runs
            full, lora, qlora = (rows[n][opt.label] for n in ("full", "lora", "qlora"))
            if not opt.offload_param:  # all on the host: the frozen base no longer counts on the GPU
                assert qlora["total_ckpt_gib"] < lora["total_ckpt_gib"], (model, opt)
            if not opt.offload_optimizer:  # offloaded, full training keeps only its bf16 weights, as LoRA does
                assert lora["total_ckpt_gib"] < full["total_ckpt_gib"], (model, opt)
                assert lora["max_micro_batch_ckpt"] >= full["max_micro_batch_ckpt"]
            # Without checkpointing LoRA's dropout copies (3 B per input feature of each adapted module, every
            # layer) outweigh what it saves at ZeRO-2/3: 130 GiB of activations at micro batch 4 against 78.
            extra = LO.extra_activation_bytes(shape_of(cfg_for("recipe=kgov_7b", f"model={model}")),
                                              LO.Adapter(), 4096, 4, False)
            assert lora["activations_gib"] - full["activations_gib"] == pytest.approx(extra / M.GIB)
        # ZeRO-0/1/2: the frozen base whole on every GPU; ZeRO-3: one eighth of it (8 GPUs).
        base = 2 * P / M.GIB
        for label in ("ZeRO-0 (DDP)", "ZeRO-1", "ZeRO-2"):
            assert rows["lora"][label]["params_gib"] == pytest.approx(base + 2 * T / M.GIB)
        assert rows["lora"]["ZeRO-3"]["params_gib"] == pytest.approx((base + 2 * T / M.GIB) / 8)
        two = {r["option"]: r for r in make_plan(cfg_for("recipe=kgov_7b", f"model={model}", "nnodes=2",
                                                         *LORA))["options"]}
        assert two["ZeRO-2"]["params_gib"] == rows["lora"]["ZeRO-2"]["params_gib"]
        assert two["ZeRO-3"]["params_gib"] == pytest.approx(rows["lora"]["ZeRO-3"]["params_gib"] / 2)
        # QLoRA under ZeRO-3: the 4-bit codes are partitioned, the quantisation constants are not.
        part, whole = LO.frozen_bytes(shape_of(cfg_for(f"model={model}", "tokenizer.vocab_size=64000")),
                                      LO.Adapter(qlora=True))
        assert rows["qlora"]["ZeRO-3"]["params_gib"] == pytest.approx((part / 8 + whole + 2 * T / 8) / M.GIB)
        assert rows["lora"]["ZeRO-3"]["grads_gib"] == pytest.approx(2 * T / 8 / M.GIB)
        assert rows["lora"]["ZeRO-2"]["optim_gib"] == pytest.approx(16 * T / 8 / M.GIB)


def test_qlora_base_and_the_65b_on_one_48gb_gpu_of_the_qlora_paper():
    """Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs" (arXiv:2305.14314): section 2, "the 4-bit
    base model [LLaMA 7B] consumes 5,048 MB of memory"; abstract, a 65B model finetuned on a single 48GB GPU with
    NF4 + double quantisation, r=64 LoRA on every linear layer, bf16 adapters and a paged 32-bit Adam."""
    assert LO.NF4_BYTES * 8 == pytest.approx(4.127, abs=5e-4)  # section 3: 4 + 8/64 + 32/(64*256) bits
    base7 = sum(LO.frozen_bytes(LLAMA_7B, GUANACO))
    assert base7 == pytest.approx(5048e6, rel=0.25)  # ours 3,866 MB: their measurement includes allocator overhead
    assert sum(LO.frozen_bytes(LLAMA_7B, LO.Adapter())) == 2 * LLAMA_7B.params  # bf16 LoRA base: 13.5 GB

    # 65B at micro batch 1, 512 tokens, checkpointing, one GPU, with the paper's optimizer: bf16 adapter and its
    # gradient, Adam's m and v in fp32 (12 B/param), no fp32 master copy.
    part, whole = LO.frozen_bytes(LLAMA_65B, GUANACO)
    T = LO.trainable_params(LLAMA_65B, GUANACO)
    assert T == 799_539_200
    act = M.activation_bytes(LLAMA_65B, 512, 1, True, False) + LO.extra_activation_bytes(LLAMA_65B, GUANACO, 512, 1,
                                                                                         True)
    paper_setup = part + whole + 12 * T + LO.DEQUANT_BYTES * LO.largest_quantised(LLAMA_65B) + act
    assert 0.85 * 48e9 <= paper_setup <= 48e9  # fits the 48 GB, but only just (they needed paged optimizers)
    # The planner's own accounting (DeepSpeed: fp32 master, fp32 step gradients) does not fit 48 GB there.
    states = LO.model_states(LLAMA_65B, GUANACO, 1, M.OPTIONS[0])
    assert M.total_bytes(states, act, 0) > 48e9
    assert states.step - (part + whole + 12 * T) == pytest.approx(8 * T)  # + fp32 master 4 + fp32 gradient 4
    lora = LO.model_states(LLAMA_65B, LO.Adapter(r=64, dropout=0.05), 1, M.OPTIONS[0])
    assert lora.fwd_bwd > 2 * 65e9  # the bf16 base alone: >130 GB


def test_lora_recipe_errors_and_render():
    cfg = cfg_for("model=7b", *A100, "nnodes=1", "pretrain.lora.qlora=true")
    with pytest.raises(RecipeError, match=r"pretrain.lora.enabled=true"):
        make_plan(cfg)
    with pytest.raises(RecipeError, match=r"pretrain.lora.target_modules: \['qkv_proj'\]"):
        make_plan(cfg_for("model=7b", *LORA, "pretrain.lora.target_modules=[q_proj,qkv_proj]"))
    with pytest.raises(RecipeError, match=r"pretrain.lora.modules_to_save: \['wte'\]"):
        make_plan(cfg_for("model=7b", *LORA, "pretrain.lora.modules_to_save=[wte]"))
    plan = make_plan(cfg_for("model=7b", *A100, "nnodes=1", *QLORA, "pretrain.lora.r=8",
                             "pretrain.lora.modules_to_save=[model.embed_tokens,lm_head]"))
    shape = shape_of(cfg_for("model=7b"))
    assert plan["saved_params"] == 2 * shape.embedding_params
    assert plan["adapter_params"] == 8 * 32 * (4096 * 8 + 3 * (4096 + 11008))
    text = render(plan)
    assert "QLoRA r=8 on q_proj" in text and "+ full model.embed_tokens,lm_head" in text and "NF4" in text


def test_plan_on_a_base_route_counts_the_imported_model(tmp_path):
    """route=cpt/finetune: the shape comes from base.path's config.json (the model section is not trained), an
    extended tokenizer grows its vocabulary; a model the planner cannot count is refused naming base.path."""
    import json

    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=500)
    config.save_pretrained(tmp_path)
    own = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    route = [f"base.path={tmp_path}", "base.name=mine", "base.license=x"]
    assert shape_of(cfg_for("route=finetune", *route)).params == own
    assert shape_of(cfg_for("route=cpt", *route, "tokenizer.mode=extend", "tokenizer.vocab_size=600")).vocab == 600
    assert make_plan(cfg_for("route=finetune", *route))["model"] == "mine"
    (tmp_path / "config.json").write_text(json.dumps({**json.loads((tmp_path / "config.json").read_text()),
                                                      "model_type": "gpt_neox"}))
    with pytest.raises(RecipeError, match="base.path: .*'gpt_neox' model"):
        shape_of(cfg_for("route=finetune", *route))
