"""The smoke recipe end to end through the real CLI, and the run-folder contract it leaves."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from kgov_train.stages import chain
from tests.chains import kgov
from tests.helpers import compose_cfg

pytestmark = pytest.mark.slow
CHAIN = [s.name for s in chain(compose_cfg(["recipe=smoke"]))]  # with the named SFT stages sft_general, sft_domain
HANGUL = re.compile(r"[가-힣]")


def manifest(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "manifest.json").read_text(encoding="utf-8"))


def read_jsonl_gz(folder: Path) -> list[dict]:
    rows = []
    for f in sorted(folder.glob("*.jsonl*")):
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


def test_every_stage_is_sealed_with_the_contract_fields(smoke_run):
    for stage in CHAIN:
        m = manifest(smoke_run, stage)
        assert m["stage"] == stage and m["status"] == "complete"
        for key in ("config", "inputs", "outputs", "metrics", "versions", "started_at", "ended_at"):
            assert m[key] not in (None, ""), (stage, key)
        assert all(len(o["sha256"]) == 64 for o in m["outputs"])
    assert {i["from_stage"] for i in manifest(smoke_run, "shards")["inputs"]} == {"data", "tokenizer"}
    assert CHAIN == ["data", "tokenizer", "shards", "pretrain", "sft_general", "sft_domain", "dpo", "eval"]
    assert any("pretrain/final" in i["path"] for i in manifest(smoke_run, "sft_general")["inputs"])
    assert any("sft_general/final" in i["path"] for i in manifest(smoke_run, "sft_domain")["inputs"])
    assert any("sft_domain/final" in i["path"] for i in manifest(smoke_run, "dpo")["inputs"])
    assert any(i["path"].endswith("sft.jsonl") for i in manifest(smoke_run, "sft_general")["inputs"])
    assert any(i["path"].endswith("constitution_qa.jsonl") for i in manifest(smoke_run, "sft_domain")["inputs"])


def test_data_stage_accounts_for_every_document(smoke_run):
    m = manifest(smoke_run, "data")["metrics"]
    kept, rejected = read_jsonl_gz(smoke_run / "data" / "clean"), read_jsonl_gz(smoke_run / "data" / "rejected")
    assert m["docs_in"] == m["docs_kept"] + m["docs_rejected"] == len(kept) + len(rejected)
    assert all({"id", "text"} <= set(d) for d in kept)
    assert all(d.get("reason") for d in rejected)


def test_training_stages_leave_checkpoints_metrics_and_loadable_models(smoke_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok_dir = smoke_run / "tokenizer"
    vocab = len(AutoTokenizer.from_pretrained(tok_dir))
    assert json.loads((smoke_run / "shards" / "index.json").read_text())["splits"]["train"]["tokens"] > 0
    for stage in ("pretrain", "sft_general", "sft_domain", "dpo"):
        assert any((smoke_run / stage / "checkpoints").glob("checkpoint-*")), stage
        lines = [json.loads(x) for x in (smoke_run / stage / "metrics.jsonl").read_text().splitlines() if x.strip()]
        assert lines and all({"step", "loss", "tokens_per_sec"} <= set(x) for x in lines), stage
        assert [x["step"] for x in lines] == sorted({x["step"] for x in lines}), stage
        final = smoke_run / stage / "final"
        model = AutoModelForCausalLM.from_pretrained(final)
        assert model.get_input_embeddings().weight.shape[0] >= vocab
        assert len(AutoTokenizer.from_pretrained(final)) == vocab


def test_dpo_model_chats_in_korean_through_its_template(smoke_run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = smoke_run / "dpo" / "final"
    tok = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final).eval()
    batch = tok.apply_chat_template([{"role": "user", "content": "오늘 너무 피곤해"}], add_generation_prompt=True,
                                    return_tensors="pt", return_dict=True)
    prompt = tok.decode(batch["input_ids"][0])
    assert "<|user|>" in prompt and prompt.rstrip().endswith("<|assistant|>")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=24, min_new_tokens=8, do_sample=False)
    reply = tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert HANGUL.search(reply), reply


def test_dpo_raises_the_held_out_preference(smoke_run):
    """Held-out pairs scored after training by the DPO model and by its reference (the sft_domain model it started
    from): the share of pairs whose chosen answer is likelier rises; TRL's implicit reward accuracy starts at 0."""
    m = manifest(smoke_run, "dpo")["metrics"]
    h = m["held_out"]
    assert h["pairs"] == m["validation_records"] > 0
    assert h["logp_accuracy"] > h["logp_accuracy_before"] and h["logp_margin"] > h["logp_margin_before"]
    assert h["reward_accuracy"] > 0.5 and h["reward_margin"] > 0
    card = (smoke_run / "dpo" / "final" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert f"| dpo | held_out.logp_accuracy | {h['logp_accuracy']:.4g} |" in card
    report = (smoke_run / "eval" / "report.md").read_text(encoding="utf-8")
    assert "## Preference on held-out pairs (DPO)" in report and f"| dpo | {h['pairs']} |" in report


@pytest.fixture(scope="module")
def lora_run(smoke_run, tmp_path_factory) -> Path:
    """sft_general -> sft_domain -> dpo again with LoRA, from the smoke run's pretrain model."""
    import shutil

    run_dir = tmp_path_factory.mktemp("lora") / "run"
    for stage in ("data", "tokenizer", "shards", "pretrain"):
        shutil.copytree(smoke_run / stage, run_dir / stage)
    kgov(run_dir, "stages=[sft_general,sft_domain,dpo]", "sft.lora.enabled=true", "sft.learning_rate=3e-3",
         "dpo.lora.enabled=true")
    return run_dir


def test_lora_chain_ships_merged_models_with_their_adapters(lora_run, smoke_run):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    previous = AutoModelForCausalLM.from_pretrained(lora_run / "pretrain" / "final")
    for stage in ("sft_general", "sft_domain", "dpo"):
        m = manifest(lora_run, stage)
        assert {o["path"].split("/")[0] for o in m["outputs"]} == {"final", "metrics.jsonl", "rejects", "adapter"}
        assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= {o["path"] for o in m["outputs"]}
        metrics = m["metrics"]
        assert metrics["lora"]["r"] == 16 and 0 < metrics["trainable_parameters"] < metrics["parameters"] / 5
        # final/ loads with plain transformers (no peft), the same shape as the base, and differs from it: the
        # adapter was merged in.
        model, info = AutoModelForCausalLM.from_pretrained(lora_run / stage / "final", output_loading_info=True)
        assert not any(info.values()), info
        assert not any("lora" in k for k in load_file(lora_run / stage / "final" / "model.safetensors"))
        now, before = dict(model.named_parameters()), dict(previous.named_parameters())
        assert now.keys() == before.keys()
        changed = [k for k in now if not torch.equal(now[k], before[k])]
        assert changed and all(k.endswith("proj.weight") for k in changed), changed
        previous = model
    card = (lora_run / "dpo" / "final" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "| lora | r=16, alpha=32" in card and "adapter/adapter_model.safetensors" in card
    h = manifest(lora_run, "dpo")["metrics"]["held_out"]
    assert h["logp_accuracy"] > h["logp_accuracy_before"] and h["reward_accuracy"] > 0.5


def test_rerun_skips_every_complete_stage(smoke_run):
    before = {s: manifest(smoke_run, s)["started_at"] for s in CHAIN}
    res = kgov(smoke_run)
    assert (res.stdout + res.stderr).count("skipped") == len(CHAIN)
    assert before == {s: manifest(smoke_run, s)["started_at"] for s in CHAIN}
