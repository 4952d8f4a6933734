"""The routes (`route=scratch|cpt|finetune`, kgov_train.run_folder.ROUTES): the chain each computes, the recipe checks
that tie tokenizer.mode to the route, and the cpt and finetune routes run for real from tiny real-shaped foundation
model folders (tests/foundation.py: Llama-2 sentencepiece without pad, Qwen2.5 byte-level with its chat template,
GPT-NeoX), two processes with ZeRO-2 where they train."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kgov_train.errors import RecipeError
from kgov_train.pipeline import validate
from kgov_train.stages import chain
from tests.chains import kgov
from tests.foundation import cached, gpt_neox, llama_sentencepiece, qwen2_byte_level
from tests.helpers import compose_cfg

BUILDERS = {"llama": llama_sentencepiece, "qwen2": qwen2_byte_level, "gpt_neox": gpt_neox}


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bases")
    return {name: cached(build, root) for name, build in BUILDERS.items()}


def on(route: str, base: Path | str = "/nonexistent") -> list[str]:
    return [f"route={route}", f"base.path={base}", "base.name=tiny", "base.license=apache-2.0"]


def test_each_route_computes_its_chain():
    names = {r: [(s.name, s.needs) for s in chain(compose_cfg(["recipe=smoke", f"route={r}"]))]
             for r in ("scratch", "cpt", "finetune")}
    assert [n for n, _ in names["scratch"]] == ["data", "tokenizer", "shards", "pretrain", "sft_general", "sft_domain",
                                                "dpo", "eval"]
    cpt = dict(names["cpt"])
    assert list(cpt)[0] == "base" and cpt["pretrain"] == ("tokenizer", "shards", "base")
    assert cpt["tokenizer"] == ("data", "base") and cpt["sft_general"] == ("pretrain",)
    ft = dict(names["finetune"])
    assert list(ft) == ["base", "sft_general", "sft_domain", "dpo", "eval"]
    assert ft["sft_general"] == ("base",) and ft["dpo"] == ("sft_domain",)


def test_a_stage_off_the_route_and_a_tokenizer_mode_against_it_are_refused(bases):
    with pytest.raises(RecipeError, match=r"stages: \['pretrain'\] not in the chain of route=finetune"):
        validate(compose_cfg(["recipe=smoke", *on("finetune", bases["llama"]), "stages=[base,pretrain]"]))
    with pytest.raises(RecipeError, match="tokenizer.mode: train makes new ids"):
        validate(compose_cfg(["recipe=smoke", *on("cpt", bases["llama"]), "tokenizer.mode=train"]))
    with pytest.raises(RecipeError, match="tokenizer.extend_from: mode base on route=scratch needs the local tokenizer"):
        validate(compose_cfg(["recipe=smoke", "tokenizer.mode=base"]))
    with pytest.raises(RecipeError, match=r"dpo.from_stage: one of the stages before dpo .*got 'pretrain'"):
        validate(compose_cfg(["recipe=smoke", *on("finetune", bases["llama"]), "dpo.from_stage=pretrain"]))
    validate(compose_cfg(["recipe=smoke", *on("finetune", bases["llama"]), "stages=[base,dpo]", "dpo.from_stage=base"]))
    with pytest.raises(RecipeError, match="base.path"):  # the base stage's own check runs before any work
        validate(compose_cfg(["recipe=smoke", *on("finetune", "meta-llama/Llama-2-7b-hf")]))


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_finetune_route_on_each_architecture(tmp_path, bases, arch):
    """base -> sft_general from the imported folder: a template-less base (Llama-2, GPT-NeoX) trains with the project's
    template and role markers, Qwen2.5 keeps its own; the papers name the base with its hashes and licence."""
    run = tmp_path / "run"
    kgov(run, *on("finetune", bases[arch]), "stages=[base,sft_general]", "sft_stages.sft_general.max_steps=2",
         "sft_stages.sft_general.save_steps=2")
    report = json.loads((run / "base" / "base.json").read_text())
    assert report["path"] == str(bases[arch]) and report["license"] == "apache-2.0"
    final = run / "sft_general" / "final"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final)
    base_tok = AutoTokenizer.from_pretrained(bases[arch])
    if base_tok.chat_template:
        assert tok.chat_template == base_tok.chat_template and len(tok) == len(base_tok)
    else:
        assert "<|assistant|>" in tok.get_vocab() and model.get_input_embeddings().weight.shape[0] >= len(tok)
    assert all(tok.convert_tokens_to_ids(t) == i for t, i in base_tok.get_vocab().items())  # every base id kept
    weights = {e["path"]: e["sha256"] for e in report["files"] if e["path"].endswith(".safetensors")}
    card = (final / "MODEL_CARD.md").read_text()
    assert "foundation model `tiny`" in card and all(sha in card for sha in weights.values()), card[:2000]
    bom = json.loads((final / "bom.json").read_text())
    assert bom["model"]["base"]["kind"] == "imported" and bom["model"]["base"]["license"] == "apache-2.0"


def test_cpt_route_base_and_extend_modes(tmp_path, bases):
    """mode base: the base tokenizer as it is; mode extend: every base id kept, new Korean pieces, and continued
    pretraining from the base with the new embedding rows trained."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    base = bases["llama"]
    run = tmp_path / "run"
    kgov(run, *on("cpt", base), "stages=[base,data,tokenizer]")
    assert (run / "tokenizer" / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()
    scratch = tmp_path / "scratch"  # a ready-made tokenizer on the scratch route: mode base with extend_from
    kgov(scratch, "stages=[data,tokenizer]", "tokenizer.mode=base", f"tokenizer.extend_from={base}")
    assert (scratch / "tokenizer" / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()

    kgov(run, *on("cpt", base), "stages=[base,data,tokenizer,shards,pretrain]", "tokenizer.mode=extend",
         "tokenizer.vocab_size=1200", "pretrain.max_steps=3", "pretrain.save_steps=3", "pretrain.learning_rate=0.01")
    old, new = AutoTokenizer.from_pretrained(base), AutoTokenizer.from_pretrained(run / "tokenizer")
    assert len(new) > len(old) and all(new.convert_tokens_to_ids(t) == i for t, i in old.get_vocab().items())
    pre = json.loads((run / "pretrain" / "manifest.json").read_text())
    assert pre["metrics"]["init_from"] == str(base)
    from kgov_train.train.model import build_pretrain_model

    cfg = compose_cfg(["recipe=smoke", f"run_dir={run}", *on("cpt", base)])
    init, _ = build_pretrain_model(cfg, new, run / "tokenizer", base=base)  # the rows pretrain started from
    start = init.get_input_embeddings().weight.detach()
    trained = load_file(run / "pretrain" / "final" / "model.safetensors")["model.embed_tokens.weight"]
    added = slice(len(old), len(new))
    moved = (trained[added] - start[added]).abs().amax(dim=1) > 1e-6
    assert moved.float().mean() > 0.5, f"{int(moved.sum())} of {len(new) - len(old)} new rows trained"

def test_a_base_file_changed_after_import_is_refused(tmp_path, bases):
    base = tmp_path / "model"
    shutil.copytree(bases["llama"], base)
    run = tmp_path / "run"
    kgov(run, *on("finetune", base), "stages=[base]")
    weights = base / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one weight's last byte: the header stays valid, the hash does not
    weights.write_bytes(bytes(data))
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", "recipe=smoke", f"run_dir={run}",
                          *on("finetune", base), "stages=[sft_general]"], capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert f"{weights}: changed since stage 'base' verified it" in out, out[-3000:]


def test_submit_chains_the_route_stages(tmp_path, bases):
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", "submit", "recipe=smoke", "cluster=dev_slurm_cpu",
                          f"run_dir={tmp_path / 'run'}", *on("finetune", bases["gpt_neox"]), "--dry-run"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert res.stdout.split()[-5:] == ["<base>", "<sft_general>", "<sft_domain>", "<dpo>", "<eval>"]
    assert "--dependency=afterok:<base> " in res.stdout and "'stages=[sft_general]'" in res.stdout


def test_a_template_without_answer_markers_that_trl_cannot_patch_is_refused(tmp_path, bases):
    base = tmp_path / "model"
    shutil.copytree(bases["qwen2"], base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
                               "'<|im_end|>\\n' }}{% endfor %}")
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    run = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", "recipe=smoke", f"run_dir={run}",
                          *on("finetune", base), "stages=[base,sft_general]"], capture_output=True, text=True,
                         timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "sft_stages.sft_general.assistant_only_loss: the chat template of" in out, out[-3000:]


@pytest.mark.parametrize("recipe, arch", [("smoke_cpt", "llama"), ("smoke_finetune", "qwen2")])
def test_each_route_runs_end_to_end_from_its_smoke_recipe(tmp_path, bases, recipe, arch):
    """The whole chain of the route, as `kgov-train recipe=<smoke_route> base.path=...` runs it; eval compares the
    base with every stage in bits per byte (the cpt stages must have learnt the Korean corpus)."""
    run = tmp_path / "run"
    # one SFT stage and no lm-eval tasks: the CI budget (the named SFT stages and lm-eval: test_smoke_chain)
    shorter = ["~sft_stages.sft_domain", "eval.tasks=[]"]
    res = subprocess.run([sys.executable, "-m", "kgov_train.cli", f"recipe={recipe}", f"run_dir={run}",
                          f"base.path={bases[arch]}", "base.name=tiny", "base.license=apache-2.0", *shorter],
                         capture_output=True, text=True, timeout=1200)
    (tmp_path / "run.log").write_text(res.stdout + res.stderr)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    names = [s.name for s in chain(compose_cfg([f"recipe={recipe}", f"base.path={bases[arch]}", "base.name=x",
                                                "base.license=x", *shorter]))]
    assert names[0] == "base" and names[-2:] == ["dpo", "eval"]
    assert all(json.loads((run / n / "manifest.json").read_text())["status"] == "complete" for n in names)
    report = json.loads((run / "eval" / "report.json").read_text())
    bpb = report["bits_per_byte"]
    assert set(bpb) == {"base", *[n for n in names if n not in ("base", "data", "tokenizer", "shards", "eval")]}
    assert all(v["bits_per_byte"] > 0 for sets in bpb.values() for v in sets.values())
    if recipe == "smoke_cpt":
        ko = "heldout:ko-gov-sample"
        assert bpb["pretrain"][ko]["bits_per_byte"] < bpb["base"][ko]["bits_per_byte"], bpb
        assert report["bits_per_byte_vs_base"][ko] < 0
