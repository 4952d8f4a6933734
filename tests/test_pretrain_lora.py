"""Continued pretraining with LoRA / QLoRA (pretrain.lora, kgov_train.train.lora), the LoRA targets per architecture,
and a padded base (more embedding rows than tokenizer ids, as Qwen2 and Polyglot-ko) under a tokenizer extension.

The chain test runs route=cpt from the Llama-2-shaped folder of tests/foundation.py (base, data, tokenizer extended
to 1,200 ids, shards, 4 LoRA pretrain steps on 2 processes under ZeRO-2), then resumes it to 6 steps (~30 s on 2
cores); the rest builds the tiny models in process (a few seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import foundation as F
from tests.chains import manifest, metrics_rows, run_chain
from tests.helpers import compose_cfg

NEOX_TARGETS = {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"}
LLAMA_TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
LORA = ("pretrain.lora.enabled=true", "pretrain.lora.r=4", "pretrain.lora.alpha=8", "pretrain.lora.dropout=0.0")


@pytest.fixture(scope="session")
def foundation_root(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "foundation"  # shared with other modules that use tests.foundation


def _cfg(*overrides: str):
    return compose_cfg(["recipe=smoke", "cluster=local_cpu", *overrides])


def _model(folder: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------------------------
# LoRA continued pretraining through the chain (route=cpt), merged final/, resume
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpt_run(foundation_root, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    llama = F.cached(F.llama_sentencepiece, foundation_root)
    run_dir = tmp_path_factory.mktemp("cpt_lora") / "run"
    overrides = ["recipe=smoke", f"run_dir={run_dir}", "route=cpt", f"base.path={llama}", "base.name=llama-tiny",
                 "base.license=apache-2.0", "tokenizer.mode=extend", "tokenizer.vocab_size=1200",
                 "pretrain.max_steps=4", "pretrain.save_steps=2", "pretrain.eval_sequences=2",
                 "pretrain.learning_rate=1e-2", *LORA]
    run_chain([*overrides, "stages=[base,data,tokenizer,shards,pretrain]"])
    return run_dir, llama, overrides


def test_cpt_lora_final_is_base_plus_merged_adapter(cpt_run):
    import torch
    from safetensors.torch import load_file

    run_dir, llama, _ = cpt_run
    stage = run_dir / "pretrain"
    m = manifest(stage)
    assert m["status"] == "complete" and m["metrics"]["steps"] == 4
    lo = m["metrics"]["lora"]
    assert lo["r"] == 4 and set(lo["target_modules"]) == LLAMA_TARGETS and not lo["qlora"]
    assert lo["modules_to_save"] == ["embed_tokens", "lm_head"]  # the default after the extension
    assert m["metrics"]["embedding_rows_initialised"] > 0
    adapter = stage / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["modules_to_save"] == ["embed_tokens", "lm_head"]

    final, info = _model_with_info(stage / "final")
    assert not any(info.values()), info
    sd = final.state_dict()
    assert not [k for k in sd if "lora" in k or "modules_to_save" in k or "base_layer" in k]
    base = _model(llama).state_dict()
    ad = load_file(adapter / "adapter_model.safetensors")
    scale = 8 / 4
    merged_deltas = 0
    for k, w in sd.items():
        if k.endswith("_proj.weight"):  # base + (alpha / r) B A
            prefix = "base_model.model." + k[: -len(".weight")]
            a, b = ad[prefix + ".lora_A.weight"], ad[prefix + ".lora_B.weight"]
            assert torch.allclose(w, base[k] + scale * b @ a, atol=1e-6), k
            merged_deltas += int((b @ a).abs().max() > 0)
        elif "embed_tokens" in k or "lm_head" in k:
            continue
        else:  # norms: frozen, untouched
            assert torch.equal(w, base[k]), k
    assert merged_deltas == 14  # every adapted projection of both layers trained
    # The embeddings are the trained full copies (modules_to_save): old rows and the new ones all moved.
    ext = json.loads((run_dir / "tokenizer" / "extension.json").read_text())
    for k, short in (("model.embed_tokens.weight", "embed_tokens"), ("lm_head.weight", "lm_head")):
        saved = [v for n, v in ad.items() if f"{short}.modules_to_save" in n or n.endswith(f"{short}.weight")]
        assert saved and torch.equal(sd[k], saved[0]), k
        assert sd[k].shape[0] == 1200
        # each new row started as the mean of its base pieces; those the 4 steps' data used have trained
        moved = [(sd[k][a["id"]] - base[k][a["base_ids"]].mean(dim=0)).abs().max() > 1e-4
                 for a in ext["added"] if a["base_ids"]]
        assert sum(moved) > len(moved) // 4, (k, sum(moved), len(moved))


def _model_with_info(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)


def test_cpt_lora_resumes_from_its_checkpoint(cpt_run):
    run_dir, _, overrides = cpt_run
    stage = run_dir / "pretrain"
    before = (stage / "adapter" / "adapter_model.safetensors").read_bytes()
    run_chain([*[o for o in overrides if not o.startswith("pretrain.max_steps")], "pretrain.max_steps=6",
               "stages=[pretrain]"])
    m = manifest(stage)
    assert m["status"] == "complete" and m["metrics"]["resumed_from_step"] == 4 and m["metrics"]["steps"] == 6
    assert [r["step"] for r in metrics_rows(stage)] == list(range(1, 7))
    assert (stage / "adapter" / "adapter_model.safetensors").read_bytes() != before


# ---------------------------------------------------------------------------------------------------------------------
# Targets per architecture, modules_to_save after an extension
# ---------------------------------------------------------------------------------------------------------------------


def test_default_targets_follow_the_architecture(foundation_root):
    import torch

    from kgov_train.train import lora

    neox = _model(F.cached(F.gpt_neox, foundation_root))
    cfg = _cfg(*LORA, "sft.lora.enabled=true")
    for name in ("pretrain", "sft"):  # pretrain and the chat stages share the table
        pc = lora.peft_config(cfg, name, neox)
        assert set(pc.target_modules) == NEOX_TARGETS and pc.modules_to_save is None
    pc = lora.peft_config(cfg, "pretrain", neox, extended=True)
    assert pc.modules_to_save == ["embed_in", "lm_head"] and not pc.ensure_weight_tying  # transformers 5 names
    model = lora.wrap(cfg, "pretrain", _model(F.cached(F.gpt_neox, foundation_root)), extended=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable if ".lora_" in n} == NEOX_TARGETS
    assert {n.split(".modules_to_save")[0].rsplit(".", 1)[-1] for n in trainable if "modules_to_save" in n} == {
        "embed_in", "lm_head"}
    out = model(input_ids=torch.tensor([[0, 5, 6, 7]]), labels=torch.tensor([[0, 5, 6, 7]]))
    out.loss.backward()  # LoRA and the embedding copies get gradients

    qwen = _model(F.cached(F.qwen2_byte_level, foundation_root))  # tied: one module, kept tied
    pc = lora.peft_config(cfg, "pretrain", qwen, extended=True)
    assert set(pc.target_modules) == LLAMA_TARGETS and pc.modules_to_save == ["embed_tokens"]
    assert pc.ensure_weight_tying
    # An explicit list is used as given; a name the model lacks is refused naming the key.
    own = _cfg(*LORA, "pretrain.lora.target_modules=[query_key_value]", "pretrain.lora.modules_to_save=[embed_in]")
    pc = lora.peft_config(own, "pretrain", neox, extended=True)
    assert set(pc.target_modules) == {"query_key_value"} and pc.modules_to_save == ["embed_in"]
    with pytest.raises(lora.LoraSetupError, match=r"^pretrain\.lora\.target_modules: 'q_proj' matches no module"):
        lora.peft_config(_cfg(*LORA, "pretrain.lora.target_modules=[q_proj]"), "pretrain", neox)


def test_unknown_architecture_with_default_targets_names_the_key(foundation_root):
    from kgov_train.train import lora

    neox = _model(F.cached(F.gpt_neox, foundation_root))
    neox.config.model_type = "somethingelse"
    with pytest.raises(lora.LoraSetupError) as e:
        lora.peft_config(_cfg("dpo.lora.enabled=true"), "dpo", neox)
    assert str(e.value).startswith("dpo.lora.target_modules: 'q_proj' matches no module of the model (model_type "
                                   "'somethingelse' has no default targets"), str(e.value)


# ---------------------------------------------------------------------------------------------------------------------
# A padded base (rows > tokenizer ids) under an extension
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extended_to", [1015, 1100])
def test_padded_qwen2_rows_take_the_new_ids(foundation_root, tmp_path, extended_to):
    """Qwen2-shaped with 1,024 rows for 1,003 ids: an extension to 1,015 ids reuses padding rows (no growth); to
    1,100 ids the embeddings grow. Either way every new row starts as the mean of its base pieces."""
    from transformers import AutoTokenizer

    from data_prep.tokenizer.extend import extend_tokenizer
    from kgov_train.train.model import build_pretrain_model

    qwen = foundation_root / "qwen2_padded"
    if not qwen.is_dir():
        F.qwen2_byte_level(qwen, rows_multiple=128)
    base = _model(qwen)
    assert base.config.vocab_size == 1024 and len(AutoTokenizer.from_pretrained(qwen)) == 1003
    tok_dir = tmp_path / "tok"
    extend_tokenizer(qwen, F.texts(), tok_dir, target_vocab_size=extended_to)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    ext = json.loads((tok_dir / "extension.json").read_text())
    assert len(tok) == extended_to and ext["base_vocab_size"] == 1003
    cfg = _cfg(f"model.init_from={qwen}", "model.resize_embeddings=true")
    model, info = build_pretrain_model(cfg, tok, tok_dir)
    assert info["vocab_size"] == max(1024, extended_to) and info["embedding_rows_initialised"] > 0
    assert ("resized_embeddings_to" in info) == (extended_to > 1024)
    emb, old = model.get_input_embeddings().weight, base.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is emb  # tied, as Qwen2's
    for a in ext["added"]:
        if a["base_ids"]:
            assert (emb[a["id"]] - old[a["base_ids"]].mean(dim=0)).abs().max() < 1e-6, a
    assert (emb[:1003] - old[:1003]).abs().max() == 0  # the base ids keep their rows


# ---------------------------------------------------------------------------------------------------------------------
# QLoRA: refused on CPU; its configs (built without a GPU)
# ---------------------------------------------------------------------------------------------------------------------


def test_qlora_pretrain_is_refused_on_cpu_at_recipe_check(foundation_root):
    from kgov_train.errors import RecipeError
    from kgov_train.pipeline import validate
    from kgov_train.stages import pretrain

    llama = F.cached(F.llama_sentencepiece, foundation_root)
    cfg = _cfg(*LORA, "pretrain.lora.qlora=true", f"model.init_from={llama}")
    errors = pretrain.check(cfg)
    assert any(e.startswith("pretrain.lora.qlora=true: QLoRA needs a CUDA GPU and bitsandbytes") and
               "cluster.device=cpu" in e for e in errors), errors
    with pytest.raises(RecipeError, match=r"pretrain\.lora\.qlora=true: QLoRA needs a CUDA GPU"):
        validate(compose_cfg(["recipe=smoke", *LORA, "pretrain.lora.qlora=true", f"model.init_from={llama}",
                              "stages=[pretrain]"]))
    off = _cfg("pretrain.lora.qlora=true", "cluster.device=cuda")
    assert any("set pretrain.lora.enabled=true as well" in e for e in pretrain.check(off))


def test_qlora_pretrain_configs(foundation_root, monkeypatch):
    import torch
    from peft import TaskType

    from kgov_train.stages import pretrain
    from kgov_train.train import lora

    monkeypatch.setattr(lora.importlib.util, "find_spec", lambda name: object())  # as if bitsandbytes were there
    llama = F.cached(F.llama_sentencepiece, foundation_root)
    cfg = _cfg(*LORA, "pretrain.lora.qlora=true", "cluster.device=cuda", f"model.init_from={llama}")
    assert not [e for e in pretrain.check(cfg) if "lora" in e]
    bnb = lora.quantization_config(cfg, "pretrain")
    assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == "nf4" and bnb.bnb_4bit_use_double_quant
    assert bnb.bnb_4bit_compute_dtype == torch.bfloat16 and bnb.bnb_4bit_quant_storage == torch.bfloat16
    pc = lora.peft_config(cfg, "pretrain", _model(llama), extended=True)
    assert pc.task_type == TaskType.CAUSAL_LM and (pc.r, pc.lora_alpha, pc.lora_dropout) == (4, 8, 0.0)
    assert set(pc.target_modules) == LLAMA_TARGETS and pc.modules_to_save == ["embed_tokens", "lm_head"]
    # QLoRA quantizes a base: a fresh model is refused up front
    fresh = _cfg(*LORA, "pretrain.lora.qlora=true", "cluster.device=cuda")
    assert "pretrain.lora.qlora: QLoRA quantizes a base model; set model.init_from or route=cpt" in \
        pretrain.check(fresh)
