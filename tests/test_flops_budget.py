"""pretrain.flops, the equal-compute budget: tokens = flops / (6 N), N the non-embedding parameters of the model
trained (counted without torch, checked here against transformers' own model); and the bits per byte of the eval
stage in the evaluated models' cards."""

from __future__ import annotations

import json
import math

import pytest

import tests.test_papers as TP
from kgov_train.errors import RecipeError
from kgov_train.papers import write_evaluated, write_papers
from kgov_train.planner.budget import flops_budget, non_embedding_parameters
from kgov_train.planner.report import make_plan, render
from kgov_train.stages import pretrain as P
from kgov_train.train.schedule import ScheduleError, pretrain_schedule
from tests import foundation as F
from tests.helpers import compose_cfg

FLOPS = 3.0e12
SMOKE = ["recipe=smoke"]  # model=tiny, seq_len 128, micro batch 4, max_steps 200 (a budget overrides it)
synthetic_run = TP.synthetic_run  # the papers' fixture: a data/tokenizer/shards/pretrain/sft run folder


def body_params(config) -> int:
    """Every parameter of transformers' LlamaForCausalLM but the input embedding and the LM head."""
    import torch
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    return sum(p.numel() for name, p in model.named_parameters()
               if not name.startswith(("model.embed_tokens.", "lm_head.")))


def llama_config(cfg, vocab: int):
    from transformers import LlamaConfig

    m = cfg.model
    return LlamaConfig(vocab_size=vocab, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
                       num_hidden_layers=m.num_hidden_layers, num_attention_heads=m.num_attention_heads,
                       num_key_value_heads=m.num_key_value_heads or m.num_attention_heads,
                       tie_word_embeddings=m.tie_word_embeddings)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return F.cached(F.llama_sentencepiece, tmp_path_factory.getbasetemp() / "foundation", weights=False)


def test_flops_to_tokens_to_max_steps_on_the_tiny_model():
    cfg = compose_cfg([*SMOKE, f"pretrain.flops={FLOPS}"])
    n = body_params(llama_config(cfg, 2000))
    assert n == body_params(llama_config(cfg, 64000)) == non_embedding_parameters(cfg)  # the vocabulary is not in N
    tokens = math.ceil(FLOPS / (6 * n))
    world = int(cfg.nnodes) * int(cfg.nproc_per_node)
    batch = 128 * 4 * world * int(cfg.pretrain.gradient_accumulation_steps)
    sched = pretrain_schedule(cfg.pretrain, world, n)
    assert sched.global_batch_tokens == batch and sched.max_steps == math.ceil(tokens / batch) > 1
    assert flops_budget(cfg) == {"flops_budget": FLOPS, "non_embedding_parameters": n, "budget_tokens": tokens}
    assert P.check(cfg) == []
    # another tokenizer, the same compute in the body: the same tokens
    wide = compose_cfg([*SMOKE, f"pretrain.flops={FLOPS}", "tokenizer.vocab_size=32000"])
    assert flops_budget(wide)["budget_tokens"] == tokens
    # the same as pretrain.tokens would give
    same = compose_cfg([*SMOKE, f"pretrain.tokens={tokens}"])
    assert pretrain_schedule(same.pretrain, world).max_steps == sched.max_steps
    assert flops_budget(same) is None


def test_tokens_and_flops_refused_naming_both():
    cfg = compose_cfg([*SMOKE, f"pretrain.flops={FLOPS}", "pretrain.tokens=100000"])
    (err,) = [e for e in P.check(cfg) if "flops" in e]
    assert "pretrain.tokens=100000" in err and "pretrain.flops=" in err and "not both" in err
    with pytest.raises(RecipeError, match=r"pretrain\.tokens=100000 and pretrain\.flops="):
        make_plan(cfg)
    with pytest.raises(ScheduleError, match="non-embedding parameters are unknown"):
        pretrain_schedule(compose_cfg([*SMOKE, f"pretrain.flops={FLOPS}"]).pretrain, 1)
    bad = compose_cfg([*SMOKE, "pretrain.flops=-1.0"])
    assert any("pretrain.flops must be > 0" in e for e in P.check(bad))


def test_flops_with_phases_refused_once():
    cfg = compose_cfg([*SMOKE, f"pretrain.flops={FLOPS}",
                       "pretrain.phases=[{name:emb,trainable:embeddings,tokens:1000},{name:all,max_steps:5}]"])
    errors = [e for e in P.check(cfg) if "flops" in e]
    assert errors == ["pretrain.flops: not combined with pretrain.phases; give each phase its tokens or max_steps "
                      "(and drop pretrain.flops)"]


def test_cpt_route_counts_the_base(llama):
    from transformers import LlamaConfig

    route = ["route=cpt", f"base.path={llama}", "base.name=llama-tiny", "base.license=apache-2.0"]
    cfg = compose_cfg([*SMOKE, *route, f"pretrain.flops={FLOPS}", "tokenizer.mode=extend",
                       "tokenizer.vocab_size=1200"])
    n = body_params(LlamaConfig.from_pretrained(llama))
    assert n == non_embedding_parameters(cfg) != non_embedding_parameters(compose_cfg([*SMOKE]))  # not model=tiny
    assert flops_budget(cfg)["budget_tokens"] == math.ceil(FLOPS / (6 * n))
    assert not [e for e in P.check(cfg) if "flops" in e or "base.path" in e]
    plan = make_plan(cfg)
    assert plan["non_embedding_params"] == n and plan["runs"][0]["tokens"] == math.ceil(FLOPS / (6 * n))
    missing = compose_cfg([*SMOKE, *route[:1], f"base.path={llama.parent / 'nowhere'}", *route[2:],
                           f"pretrain.flops={FLOPS}"])
    assert any(e.startswith("base.path:") for e in P.check(missing))


def test_plan_uses_flops():
    cfg = compose_cfg(["~recipe", "model=7b", "cluster=a100_80g_multi_node", "nnodes=4", "pretrain.flops=1.0e23"])
    plan = make_plan(cfg)
    n = plan["non_embedding_params"]
    assert n == plan["params"] - 2 * plan["embedding_params"]  # untied: embedding and LM head out
    assert [r["budget"] for r in plan["runs"]] == ["pretrain.flops", "chinchilla"]
    assert plan["tokens"] == plan["runs"][0]["tokens"] == math.ceil(1.0e23 / (6 * n))
    assert plan["tokens_source"] == "pretrain.flops" and plan["flops_budget"] == 1.0e23
    assert "pretrain.flops 1.000e+23 = 6 x" in render(plan)


def test_card_of_an_evaluated_stage_shows_bits_per_byte(synthetic_run):
    run = synthetic_run
    before = write_papers(run, "pretrain")["card"].read_text()
    assert "Bits per byte" not in before
    bpb = {"pretrain": {"heldout:law": {"bits_per_byte": 0.9}, "mine.txt": {"bits_per_byte": 1.25}},
           "base": {"heldout:law": {"bits_per_byte": 1.1}, "mine.txt": {"bits_per_byte": 1.0}}}
    TP.write_json(run / "eval" / "report.json", {"model_stage": "pretrain", "bits_per_byte": bpb})
    (run / "eval" / "bits_per_byte.png").write_bytes(b"png")
    written = write_evaluated(run, ["base", "pretrain"], run / "eval" / "papers")  # base: not a training stage
    assert sorted(p.relative_to(run).as_posix() for p in written) == ["eval/papers/pretrain/MODEL_CARD.md",
                                                                      "eval/papers/pretrain/bom.cdx.json",
                                                                      "eval/papers/pretrain/bom.json"]
    card = (run / "eval" / "papers" / "pretrain" / "MODEL_CARD.md").read_text()
    assert "| heldout:law | 0.9 | 1.1 | -0.2 |" in card and "| mine.txt | 1.25 | 1 | 0.25 |" in card
    assert f"`{run / 'eval' / 'bits_per_byte.png'}`" in card
    bom = json.loads((run / "eval" / "papers" / "pretrain" / "bom.json").read_text())
    assert bom["evaluation"]["bits_per_byte"]["heldout:law"] == {"bits_per_byte": 0.9, "base": 1.1, "vs_base": -0.2}
    # a sealed eval stage: its manifest's bits_per_byte_by_stage; no base in the run, no change column
    TP.write_json(run / "eval" / "manifest.json", TP.manifest("eval", metrics={
        "bits_per_byte_by_stage": {"pretrain": {"heldout:law": 0.8}}}))
    card = write_papers(run, "pretrain")["card"].read_text()
    assert "| heldout:law | 0.8 |" in card and "| base |" not in card
