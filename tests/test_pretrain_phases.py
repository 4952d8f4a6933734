"""pretrain.phases (kgov_train.train.phases): the new embedding rows of a vocabulary extension trained first with
everything else frozen, then the whole model, as phases of one pretrain stage.

route=cpt from the Llama-2-shaped folder of tests/foundation.py, tokenizer extended to 1,200 ids, 2 processes under
ZeRO-2: phase `embed` (new_embeddings, 3 steps) then `all` (8 steps), SIGKILLed in phase `all` after its first
checkpoint and resumed; then the same stage again from scratch (force=true) as the uninterrupted reference.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from transformers import TrainerCallback

from kgov_train.errors import RecipeError
from tests import foundation as F
from tests.chains import manifest, metrics_rows, processes_mentioning, run_chain, sigkill_when
from tests.helpers import compose_cfg

PHASES = ("pretrain.phases=[{name:embed,trainable:new_embeddings,max_steps:3,learning_rate:0.01},"
          "{name:all,trainable:all,max_steps:8}]")
EMBED, ALL = 3, 8


class SlowSteps(TrainerCallback):
    """A pause after each step, so the test can kill the run between two steps (the losses do not change)."""

    def __init__(self, seconds: float = 0.15):
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return F.cached(F.llama_sentencepiece, tmp_path_factory.getbasetemp() / "foundation")


def _on(run_dir: Path, llama: Path) -> list[str]:
    return ["recipe=smoke", f"run_dir={run_dir}", "route=cpt", f"base.path={llama}", "base.name=llama-tiny",
            "base.license=apache-2.0", "tokenizer.mode=extend", "tokenizer.vocab_size=1200"]


@pytest.fixture(scope="module")
def phased(llama, tmp_path_factory):
    from kgov_train.train.resume import complete_checkpoints

    run_dir = tmp_path_factory.mktemp("phases") / "run"
    overrides = [*_on(run_dir, llama), PHASES, "pretrain.save_steps=2", "pretrain.eval_sequences=2",
                 "pretrain.learning_rate=1e-2", "pretrain.warmup_steps=1", "pretrain.spike.policy=none"]
    run_chain([*overrides, "stages=[base,data,tokenizer,shards]"])
    stage = run_dir / "pretrain"
    phase2 = stage / "checkpoints" / "phase-1-all"
    log = run_dir.parent / "killed.log"
    slow = "pretrain.callbacks=[{_target_:tests.test_pretrain_phases.SlowSteps}]"
    sigkill_when([*overrides, slow, "stages=[pretrain]"], log, "phase-2 checkpoint",
                 lambda rows: complete_checkpoints(phase2) and rows and rows[-1].get("phase_step", 0) >= 3
                 and rows[-1].get("phase") == "all", stage)
    deadline = time.time() + 20
    while processes_mentioning(str(run_dir)) and time.time() < deadline:
        time.sleep(0.1)
    killed_rows = metrics_rows(stage)
    resume_step = int(complete_checkpoints(phase2)[-1].name.split("-")[1])
    embed_ckpt = complete_checkpoints(stage / "checkpoints" / "phase-0-embed")[-1]
    embed_weights = _weights(embed_ckpt)
    run_chain([*overrides, "stages=[pretrain]"])
    resumed = {"rows": metrics_rows(stage), "manifest": manifest(stage), "final": _weights(stage / "final")}
    run_chain([*overrides, "stages=[pretrain]", "force=true"])  # the uninterrupted reference
    return dict(run_dir=run_dir, killed_rows=killed_rows, resume_step=resume_step, embed_ckpt=embed_ckpt,
                embed_weights=embed_weights, resumed=resumed, fresh_rows=metrics_rows(stage), llama=llama)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_phase_one_moves_only_the_new_embedding_rows(phased):
    import torch

    base = _weights(phased["llama"])
    ext = json.loads((phased["run_dir"] / "tokenizer" / "extension.json").read_text())
    old = int(ext["base_vocab_size"])
    after = phased["embed_weights"]
    assert phased["embed_ckpt"].name == f"checkpoint-{EMBED}"
    assert set(after) == set(base)
    for k, w in after.items():
        if k in ("model.embed_tokens.weight", "lm_head.weight"):
            assert w.shape[0] == 1200 and torch.equal(w[:old], base[k]), k  # base rows bit-identical
            start = torch.stack([base[k][a["base_ids"]].mean(dim=0) for a in ext["added"] if a["base_ids"]])
            ids = [a["id"] for a in ext["added"] if a["base_ids"]]
            moved = (w[ids] - start).abs().amax(dim=1) > 1e-6
            assert int(moved.sum()) > len(ids) // 4, (k, int(moved.sum()), len(ids))
        else:
            assert torch.equal(w, base[k]), k  # every other weight frozen


def test_phase_two_trains_everything(phased):
    import torch

    base, final = _weights(phased["llama"]), phased["resumed"]["final"]
    others = [k for k in base if "embed_tokens" not in k and "lm_head" not in k and "norm" not in k]
    assert others and all(not torch.equal(final[k], base[k]) for k in others)
    old = json.loads((phased["run_dir"] / "tokenizer" / "extension.json").read_text())["base_vocab_size"]
    assert not torch.equal(final["model.embed_tokens.weight"][:old], base["model.embed_tokens.weight"])


def test_manifest_and_metrics_record_the_phases(phased):
    m = phased["resumed"]["manifest"]
    assert m["status"] == "complete"
    met = m["metrics"]
    assert met["steps"] == EMBED + ALL
    ph = met["phases"]
    assert [(p["name"], p["trainable"], p["steps"]) for p in ph] == [("embed", "new_embeddings", EMBED),
                                                                       ("all", "all", ALL)]
    assert ph[0]["trainable_parameters"] == (1200 - met["new_rows_from"]) * 32 * 2  # two untied matrices
    assert ph[1]["trainable_parameters"] == met["parameters"]
    assert ph[0]["learning_rate"] == 0.01 and ph[0]["tokens"] > 0 and met["tokens_seen"] == ph[0]["tokens"] + \
        ph[1]["tokens"]
    rows = phased["resumed"]["rows"]
    assert [r["step"] for r in rows] == list(range(1, EMBED + ALL + 1))
    assert [r["phase"] for r in rows] == ["embed"] * EMBED + ["all"] * ALL
    assert [r["phase_step"] for r in rows] == [*range(1, EMBED + 1), *range(1, ALL + 1)]


def test_resume_after_sigkill_in_phase_two_matches_an_uninterrupted_run(phased):
    k = phased["resume_step"]
    m = phased["resumed"]["manifest"]["metrics"]
    assert m["resumed_from_step"] == k and 0 < k < ALL
    killed = {r["step"]: r for r in phased["killed_rows"]}
    assert max(killed) > EMBED + k, "the kill was meant to land after a phase-2 checkpoint, with steps logged past it"
    fresh = {r["step"]: r for r in phased["fresh_rows"]}
    rows = phased["resumed"]["rows"]
    assert len(fresh) == len(rows) == EMBED + ALL
    for r in rows:  # every step, the redone ones and those after them, as in the uninterrupted run
        assert r["loss"] == pytest.approx(fresh[r["step"]]["loss"], rel=1e-5), r["step"]
        if r["step"] in killed:
            assert r["loss"] == pytest.approx(killed[r["step"]]["loss"], rel=1e-5), r["step"]


# ---------------------------------------------------------------------------------------------------------------------
# Recipe checks
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (["recipe=smoke", "pretrain.phases=[{name:embed,trainable:new_embeddings,max_steps:2}]"],
     r"pretrain\.phases\[0\]\.trainable: new_embeddings needs an extended vocabulary"),
    (["pretrain.phases=[{name:a,max_steps:2},{name:a,trainable:embeddings,tokens:1000}]"],
     r"pretrain\.phases\[1\]\.name: 'a' is used by an earlier phase"),
    (["pretrain.phases=[{name:a,max_steps:0}]"], r"pretrain\.phases\[0\]\.max_steps: must be > 0, got 0"),
    (["pretrain.phases=[{name:a,tokens:-5}]"], r"pretrain\.phases\[0\]\.tokens: must be > 0"),
    (["pretrain.phases=[{name:a}]"], r"pretrain\.phases\[0\]: set tokens or max_steps"),
    (["pretrain.phases=[{name:a,max_steps:2}]", "pretrain.lora.enabled=true"],
     r"pretrain\.phases: not combined with pretrain\.lora\.enabled=true"),
])
def test_recipe_refusals(llama, tmp_path, overrides, message):
    from kgov_train.pipeline import validate

    on = [] if overrides[0].startswith("recipe=") else _on(tmp_path / "run", llama)
    with pytest.raises(RecipeError, match=message):
        validate(compose_cfg([*on, *overrides]))


def test_a_valid_plan_passes_the_checks(llama, tmp_path):
    from kgov_train.pipeline import validate

    validate(compose_cfg([*_on(tmp_path / "run", llama), PHASES]))
    with pytest.raises(Exception, match="trainable"):  # the enum is typed: a typo fails at composition
        compose_cfg([*_on(tmp_path / "run", llama), "pretrain.phases=[{name:a,trainable:new_rows,max_steps:1}]"])


def test_new_embeddings_on_tied_embeddings_leave_the_base_rows_bit_identical(tmp_path_factory):
    """Qwen2-style tied input/output embeddings: one matrix, one hook; AdamW (weight decay 0, as the phase runs)
    moves the new rows only, and every other parameter is frozen."""
    import torch
    from transformers import AutoModelForCausalLM

    from kgov_train.train.phases import restrict

    qwen = F.cached(F.qwen2_byte_level, tmp_path_factory.getbasetemp() / "foundation")
    model = AutoModelForCausalLM.from_pretrained(qwen, dtype=torch.float32)
    emb = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is emb
    rows, width = emb.shape
    base = rows - 40
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable, hooks = restrict(model, "new_embeddings", base)
    assert trainable == 40 * width and len(hooks) == 1
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["model.embed_tokens.weight"]
    opt = torch.optim.AdamW([emb], lr=1e-2, weight_decay=0.0)
    ids = torch.tensor([[1, 5, rows - 3, 7, rows - 1, 2]])
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        assert emb.grad[:base].abs().sum() == 0 and emb.grad[base:].abs().sum() > 0
        opt.step()
        opt.zero_grad()
    after = dict(model.named_parameters())
    assert torch.equal(after["model.embed_tokens.weight"][:base], before["model.embed_tokens.weight"][:base])
    assert not torch.equal(after["model.embed_tokens.weight"][base:], before["model.embed_tokens.weight"][base:])
    assert all(torch.equal(after[n], w) for n, w in before.items() if n != "model.embed_tokens.weight")
    for h in hooks:
        h.remove()
