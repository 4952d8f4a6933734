"""A bad recipe fails in seconds, before any heavy work, naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kgov_train.errors import RecipeError
from kgov_train.pipeline import validate
from tests.helpers import REPO_ROOT, compose_cfg


def kgov(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kgov_train.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("pretrain.max_stepz=5", "pretrain.max_stepz", "not in"),
        ("pretrain.max_steps=lots", "pretrain.max_steps", "could not be converted"),
        ("tokenizer.vocab_size=1.5", "tokenizer.vocab_size", "could not be converted"),
        ("model=no_such_size", "model", "no_such_size"),
    ],
)
def test_schema_errors_name_the_key_without_traceback(override, key, words, tmp_path):
    res = kgov("recipe=smoke", f"run_dir={tmp_path / 'run'}", override)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert key in out and words in out
    assert "Traceback" not in out
    assert not (tmp_path / "run").exists(), "nothing may be written for a bad recipe"


def test_semantic_errors_exit_2_listing_every_bad_key(tmp_path):
    res = kgov("recipe=smoke", f"run_dir={tmp_path / 'run'}", f"data.inputs=[{tmp_path}/nothing/*.jsonl]",
               "pretrain.seq_len=100000", "stages=[data,pretrain,eval_later]")
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "data.inputs[0]: no file matches" in out
    assert "pretrain.seq_len: 100000 exceeds model.max_position_embeddings" in out
    assert "stages: ['eval_later'] not in the chain of route=scratch" in out
    assert "Traceback" not in out
    assert not (tmp_path / "run").exists()


def test_help_and_a_missing_recipe_say_what_to_do_without_a_traceback():
    for args in ([], ["--help"], ["-h"]):
        res = kgov(*args)
        assert res.returncode == 0 and "Traceback" not in res.stdout + res.stderr
        assert all(w in res.stdout for w in ("kgov-train recipe=smoke", "submit", "plan", "smoke", "kgov_7b"))
    res = kgov("stages=[data]")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "recipe=<name> is required" in res.stderr and "smoke" in res.stderr


def test_print_composed_config():
    res = kgov("recipe=smoke", "pretrain.max_steps=7", "--cfg", "job")
    assert res.returncode == 0, res.stderr
    assert "max_steps: 7" in res.stdout and "recipe_name: smoke" in res.stdout


def test_every_shipped_recipe_and_group_composes():
    from pathlib import Path

    recipes = Path(__file__).resolve().parents[1] / "recipes"
    for group in ("model", "deepspeed", "cluster"):
        for option in sorted(p.stem for p in (recipes / group).glob("*.yaml")):
            cfg = compose_cfg(["recipe=smoke", f"{group}={option}"])
            assert cfg[group] is not None
    cfg = compose_cfg(["recipe=kgov_7b"])
    assert cfg.model.hidden_size == 4096 and cfg.deepspeed.zero_optimization.stage == 3


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["cluster.backend=nccl"], "cluster.backend: nccl needs cluster.device=cuda"),
        (["cluster.precision=fp16"], "cluster.precision: fp16 training needs a GPU"),
        (["pretrain.zero_stage=4"], "pretrain.zero_stage: 0, 1, 2 or 3"),
        (["sft.micro_batch_size=0"], "sft.micro_batch_size: must be >= 1"),
        (["model.init_from=/no/such/checkpoint"], "model.init_from: '/no/such/checkpoint' is not a local folder"),
        (["deepspeed=zero3_offload", "pretrain.zero_stage=2"], "offload_param: needs ZeRO-3"),
        (["data.encoding=cp94"], "data.encoding: unknown encoding 'cp94'"),
        (["tokenizer.baseline=/no/such/tokenizer"], "tokenizer.baseline: /no/such/tokenizer is not a local tokenizer"),
        (["tokenizer.extend_from=/nope"], "tokenizer.extend_from: /nope is not a local tokenizer folder"),
        (["tokenizer.user_defined_symbols=['<s>']"], "tokenizer.user_defined_symbols: non-empty, distinct"),
        (["tokenizer.heldout_fraction=1.0"], "tokenizer.heldout_fraction: in "),
        (["dpo.beta=0"], "dpo.beta: must be > 0"),
        (["data.dedup.short_similarity=1.5"], "data.dedup.short_similarity must be in (0, 1)"),
        (["data.dedup.buckets=0"], "data.dedup.buckets must be >= 1"),
    ],
)
def test_semantic_checks(overrides, message):
    cfg = compose_cfg(["recipe=smoke", *overrides])
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        validate(cfg)


@pytest.mark.parametrize("override, key, choices", [
    ("tokenizer.model_type=wordpiece", "tokenizer.model_type", "[bpe, unigram]"),
    ("dpo.loss_type=simgoid", "dpo.loss_type", "[sigmoid, hinge, ipo"),
    ("pretrain.spike.policy=ignore", "pretrain.spike.policy", "[none, skip, rollback]"),
    ("cluster.precision=bf32", "cluster.precision", "[fp32, bf16, fp16]"),
    ("sft.optimizer.name=adam", "sft.optimizer.name", "[adamw_torch, "),
])
def test_a_choice_outside_its_enum_fails_at_composition_naming_the_key(override, key, choices):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as e:
        compose_cfg(["recipe=smoke", override])
    text = str(e.value) + str(e.value.__cause__ or "")
    assert key in text and choices in text, text


def test_dpo_loss_types_are_trls():
    """DPOLoss lists exactly the loss types TRL's DPOConfig documents (a TRL upgrade that adds or drops one fails)."""
    import dataclasses
    import re

    from trl import DPOConfig

    from kgov_train.config.schema import DPOLoss

    help_text = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss_type").metadata["help"]
    documented = re.findall(r"`'([a-z_]+)'`", help_text.split("If multiple")[0])
    assert sorted(documented) == sorted(m.value for m in DPOLoss)


def test_trainer_args_are_checked_against_the_real_arguments_object():
    """`<stage>.trainer_args` reach TrainingArguments / SFTConfig / DPOConfig as they are; a field the object does
    not have, a value it refuses, or a key the stage derives itself fails when the recipe is checked."""
    def problems(*overrides: str) -> str:
        with pytest.raises(RecipeError) as e:
            validate(compose_cfg(["recipe=smoke", *overrides]))
        return str(e.value)

    assert "pretrain.trainer_args: " in problems("+pretrain.trainer_args.no_such_field=1")
    assert "no_such_field" in problems("+pretrain.trainer_args.no_such_field=1")
    assert "sft.trainer_args: SFTConfig refuses them" in problems("+sft.trainer_args.eval_strategy=sometimes")
    assert "dpo.trainer_args: ['max_steps'] are set by the stage's own keys" in problems("+dpo.trainer_args.max_steps=3")
    cfg = compose_cfg(["recipe=smoke", "+pretrain.trainer_args.adam_beta2=0.98", "+sft.trainer_args.neftune_noise_alpha=5"])
    validate(cfg)
    from kgov_train.train.arguments import training_kwargs

    kw = training_kwargs(cfg, "pretrain", REPO_ROOT / "unused")
    assert kw["adam_beta2"] == 0.98 and kw["adam_beta1"] == cfg.pretrain.optimizer.beta1
    assert training_kwargs(cfg, "sft_general", REPO_ROOT / "unused")["neftune_noise_alpha"] == 5


@pytest.mark.parametrize("recipe", ["kgov_7b", "kgov_cpt_7b"])
def test_pretraining_recipes_use_llm_adamw_betas(recipe):
    cfg = compose_cfg([f"recipe={recipe}"])
    o = cfg.pretrain.optimizer
    assert (o.beta1, o.beta2, o.weight_decay) == (0.9, 0.95, 0.1)


def test_route_recipes_compose_to_their_chains():
    from kgov_train.stages import chain

    for recipe, route in (("kgov_cpt_7b", "cpt"), ("kgov_finetune_7b", "finetune")):
        cfg = compose_cfg([f"recipe={recipe}"])
        assert cfg.route == route and cfg.cluster.name == "a100_80g_single_node"
        assert [s.name for s in chain(cfg)][0] == "base" and ("pretrain" in [s.name for s in chain(cfg)]) == (route == "cpt")


def test_named_sft_stages_errors_name_the_key_that_sets_the_value():
    """A bad `sft` key inherited by both named SFT stages is reported once, under sft.*; a named stage's own bad key
    under sft_stages.<name>.*; an unknown key or a bad stage name is refused before anything runs."""
    def problems(*overrides: str) -> list[str]:
        with pytest.raises(RecipeError) as e:
            validate(compose_cfg(["recipe=smoke", *overrides]))
        return str(e.value).splitlines()[1:]

    assert problems("sft.micro_batch_size=0") == ["  sft.micro_batch_size: must be >= 1, got 0"]
    assert problems("+sft_stages.sft_domain.overlong=cut")[0].startswith(
        "  sft_stages.sft_domain.overlong: Invalid value 'cut', expected one of [truncate, drop]")
    assert problems("sft.lora.enabled=true", "+sft_stages.sft_general.lora.r=0") == [
        "  sft_stages.sft_general.lora.r: must be >= 1, got 0"]
    assert "sft_stages.sft_domain.bogus: Key 'bogus' not in" in problems("+sft_stages.sft_domain.bogus=1")[0]
    assert problems("+sft_stages.domain={}")[0].startswith("  sft_stages.domain: a named SFT stage is sft_<")
    assert problems("+sft_stages.sft_domain.datasets=[{name: x, inputs: []}]")[0].startswith(
        "  sft_stages.sft_domain.datasets[0]")
    # The smoke recipe's named stages: sft_domain's own learning rate and datasets, sft's other keys.
    from kgov_train.config.sections import section

    cfg = compose_cfg(["recipe=smoke", "sft.warmup_steps=7"])
    general, domain = section(cfg, "sft_general"), section(cfg, "sft_domain")
    assert general.warmup_steps == domain.warmup_steps == 7
    assert domain.learning_rate != general.learning_rate == cfg.sft.learning_rate
    assert [d.name for d in domain.datasets] != [d.name for d in general.datasets] and not domain.data


def test_unknown_source_encoding_names_the_source_key():
    from tests.helpers import REPO_ROOT

    sample = REPO_ROOT / "examples" / "data" / "ko-gov-sample"
    sources = (f"[{{name: law, inputs: ['{sample}/kolaw_*.txt'], encoding: cp949}}, "
               f"{{name: bills, inputs: ['{sample}/kobill_*.txt'], encoding: cp94}}]")
    cfg = compose_cfg(["recipe=smoke", "data.inputs=[]", f"data.sources={sources}"])
    with pytest.raises(RecipeError, match=r"data\.sources\[1\]\.encoding: unknown encoding 'cp94'"):
        validate(cfg)
    cfg.data.sources[1].encoding = None  # falls back to data.encoding
    validate(cfg)
    from kgov_train.stages.data import corpus_inputs

    assert {(i.source, i.encoding) for i in corpus_inputs(cfg, {})} == {("law", "cp949"), ("bills", "utf-8")}


def test_smoke_recipe_is_valid():
    validate(compose_cfg(["recipe=smoke"]))
