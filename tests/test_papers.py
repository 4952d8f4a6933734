"""MODEL_CARD.md and bom.json: rendered from a synthetic run folder (fast), and written by real training (slow)."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from tests.helpers import REPO_ROOT
from kgov_train.papers import FORMAT, PapersError, regenerate, write_papers
from kgov_train.papers.bom import KEY_PACKAGES
from kgov_train.papers.facts import PAPERS, data_facts


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")


def manifest(stage: str, status: str = "complete", **kw) -> dict:
    return {"stage": stage, "status": status, "fingerprint": f"fp-{stage}", "config": kw.pop("config", {}),
            "inputs": kw.pop("inputs", []), "outputs": kw.pop("outputs", []), "metrics": kw.pop("metrics", {}),
            "versions": {"python": "3.11", "torch": "9.9"}, "git_commit": "abc123", "host": "h",
            "started_at": "2026-01-01T00:00:00+0000", "ended_at": "2026-01-01T00:01:00+0000", "wall_seconds": 60.0,
            "error": None, **kw}


@pytest.fixture
def synthetic_run(tmp_path) -> Path:
    """data (two sources, two licences), tokenizer, shards, a complete pretrain and an sft still running."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    files = {"law": [corpus / "law_a.txt", corpus / "law_b.txt"], "news": [corpus / "news.jsonl"]}
    lic = {"law": "KOGL-1", "news": "CC-BY-4.0"}
    for fs in files.values():
        for f in fs:
            f.write_text(f"본문 {f.name}\n", encoding="utf-8")
    run = tmp_path / "run"
    data_inputs = [{"path": str(f), "sha256": sha(f), "bytes": f.stat().st_size, "source": n, "file": f.name}
                   for n, fs in files.items() for f in fs]
    sources = [{"name": n, "inputs": [str(corpus / (n + "*"))], "license": lic[n], "weight": 1.0} for n in files]
    write_json(run / "data" / "manifest.json", manifest("data", config={"data": {"sources": sources}},
               inputs=data_inputs, metrics={
                   "sources": {"law": {"license": "KOGL-1", "weight": 1.0, "files": 2, "docs_kept": 3,
                                       "chars_kept": 300, "pii": {"phone": 2}},
                               "news": {"license": "CC-BY-4.0", "weight": 1.0, "files": 1, "docs_kept": 1,
                                        "chars_kept": 50}},
                   "licenses": {"KOGL-1": {"sources": ["law"], "docs_kept": 3, "chars_kept": 300},
                                "CC-BY-4.0": {"sources": ["news"], "docs_kept": 1, "chars_kept": 50}}}))
    # kept: law_a x2, law_b x1, news x1; rejected: news x1
    def rec(f, src):
        return json.dumps({"id": f.name, "text": '"input_sha256":"' + "0" * 64 + '" in text',
                           "metadata": {"source": src, "license": lic[src], "input_sha256": sha(f), "file": f.name}},
                          ensure_ascii=False)
    clean = [rec(files["law"][0], "law"), rec(files["law"][0], "law"), rec(files["law"][1], "law"),
             rec(files["news"][0], "news")]
    for folder, rows in (("clean", clean), ("rejected", [rec(files["news"][0], "news")])):
        (run / "data" / folder).mkdir(parents=True)
        with gzip.open(run / "data" / folder / "000_00000.jsonl.gz", "wt", encoding="utf-8") as fh:
            fh.write("\n".join(rows) + "\n")
    (run / "tokenizer").mkdir()
    (run / "tokenizer" / "tokenizer.json").write_text('{"model": "stage"}')
    write_json(run / "tokenizer" / "manifest.json", manifest("tokenizer", metrics={"vocab_size": 2000,
               "model_type": "bpe"}, outputs=[{"path": "tokenizer.json", "sha256": sha(run / "tokenizer" /
                                                                                        "tokenizer.json"), "bytes": 18}]))
    index = {"format": "kgov-shards/2", "sources": ["law", "news"],
             "splits": {"train": {"tokens": 900, "sources": {"law": {"tokens": 700, "documents": 2},
                                                             "news": {"tokens": 200, "documents": 1}}},
                        "validation": {"tokens": 100, "sources": {"law": {"tokens": 100, "documents": 1}}}},
             "mixture": {"seed": 0, "tokens": 900, "sources": {"law": {"realised_tokens": 700},
                                                               "news": {"realised_tokens": 200}}}}
    write_json(run / "shards" / "index.json", index)
    write_json(run / "shards" / "manifest.json", manifest("shards", outputs=[
        {"path": "index.json", "sha256": sha(run / "shards" / "index.json"), "bytes": 1}]))
    pre_final = run / "pretrain" / "final"
    pre_final.mkdir(parents=True)
    (pre_final / "model.safetensors").write_bytes(b"pretrained")
    write_json(run / "pretrain" / "manifest.json", manifest(
        "pretrain", config={"pretrain": {"learning_rate": 3e-3, "seq_len": 128}, "model": {
            "name": "tiny", "architecture": "llama", "hidden_size": 64, "num_hidden_layers": 2, "init_from": None}},
        metrics={"world_size": 2, "parameters": 1000, "tokens_seen": 5000, "steps": 10, "flops_per_token": 7000.0,
                 "validation_loss": 4.5},
        outputs=[{"path": "final/model.safetensors", "sha256": sha(pre_final / "model.safetensors"), "bytes": 10}]))
    chat = tmp_path / "sft.jsonl"
    chat.write_text("{}\n")
    final = run / "sft" / "final"
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"sft weights")
    (final / "tokenizer.json").write_text('{"model": "shipped"}')
    write_json(run / "sft" / "manifest.json", manifest("sft", status="running", ended_at=None, wall_seconds=None,
               inputs=[{"path": str(pre_final / "model.safetensors"), "sha256": "x", "from_stage": "pretrain"},
                       {"path": str(chat), "sha256": sha(chat), "bytes": 3}]))
    return run


SFT_CONFIG = {"sft": {"learning_rate": 1e-3, "max_steps": 6, "micro_batch_size": 4, "max_length": 128},
              "cluster.precision": "fp32", "seed": 42}


def test_papers_from_synthetic_manifests(synthetic_run):
    run = synthetic_run
    paths = write_papers(run, "sft", config=SFT_CONFIG, recipe_name="demo", device="cpu",
                         metrics={"world_size": 2, "parameters": 1000, "tokens_seen": 300, "steps": 6, "zero_stage": 3})
    final = run / "sft" / "final"
    assert paths == {"card": final / "MODEL_CARD.md", "bom": final / "bom.json", "cyclonedx": final / "bom.cdx.json"}
    bom = json.loads(paths["bom"].read_text())
    assert bom["format"] == FORMAT == "kgov-bom/1"

    data = run.parent / "corpus"
    by_path = {d["path"]: d for d in bom["data"]["files"]}
    assert set(by_path) == {str(p) for p in data.iterdir()}
    for p in data.iterdir():
        assert by_path[str(p)]["sha256"] == sha(p)
    assert by_path[str(data / "law_a.txt")] | {} == {**by_path[str(data / "law_a.txt")], "source": "law",
                                                     "license": "KOGL-1", "docs_kept": 2, "docs_rejected": 0}
    assert (by_path[str(data / "news.jsonl")]["docs_kept"], by_path[str(data / "news.jsonl")]["docs_rejected"]) == (1, 1)
    assert by_path[str(data / "news.jsonl")]["file"] == "news.jsonl"  # what the records name it by, with its source
    law_b = next(x for x in bom["components"] if x["name"] == str(data / "law_b.txt"))
    assert {"name": "kgov:file", "value": "law_b.txt"} in law_b["properties"]
    # data/clean too large to count per file: each input's source is the one its manifest entry names,
    # not a guess from the recorded globs (left out here)
    data_m = json.loads((run / "data" / "manifest.json").read_text()) | {"config": {}}
    facts = data_facts(run, data_m, limit=0)
    assert [(d["source"], d["license"], d["docs_kept"]) for d in facts["data_files"]] == [
        ("law", "KOGL-1", None), ("law", "KOGL-1", None), ("news", "CC-BY-4.0", None)]
    assert bom["data"]["sources"]["law"]["tokens"] == {"train": 700, "validation": 100, "mixture": 700,
                                                       "train_documents": 2, "validation_documents": 1}
    assert bom["data"]["sources"]["news"]["license"] == "CC-BY-4.0"
    assert bom["data"]["finetune_files"][0]["path"].endswith("sft.jsonl")
    assert bom["shards"]["tokens"] == 1000
    assert bom["tokenizer"]["sha256"] == sha(final / "tokenizer.json")
    assert bom["tokenizer"]["stage_sha256"] == sha(run / "tokenizer" / "tokenizer.json")
    assert [s["stage"] for s in bom["stages"]] == ["data", "tokenizer", "shards", "pretrain", "sft"]
    assert bom["stages"][-1]["config"] == SFT_CONFIG and bom["stages"][-1]["status"] == "running"
    assert {o["path"] for o in bom["stages"][-1]["outputs"]} == {"final/model.safetensors", "final/tokenizer.json"}
    assert bom["model"]["base"]["weights_sha256"] == {"final/model.safetensors": sha(run / "pretrain" / "final" /
                                                                                      "model.safetensors")}
    c = bom["compute"]
    assert c["training_flops"] == 6 * 1000 * 300 and c["device_hours_unit"] == "CPU-hours"
    assert c["chain"][0]["training_flops"] == 7000.0 * 5000  # pretrain: its own flops_per_token
    assert c["chain_training_flops"] == 7000.0 * 5000 + 6 * 1000 * 300
    assert c["wall_seconds"] > 0  # running: since started_at
    for name in KEY_PACKAGES:
        try:
            assert bom["software"]["installed"][name] == metadata.version(name)
        except metadata.PackageNotFoundError:
            assert bom["software"]["installed"][name] is None
    assert bom["software"]["packages"] == {"python": "3.11", "torch": "9.9"}
    assert any(x["type"] == "machine-learning-model" for x in bom["components"])
    assert all(x["hashes"][0]["alg"] == "SHA-256" for x in bom["components"] if x["hashes"])

    card = paths["card"].read_text()
    assert "# Model card: demo-sft" in card
    assert "Fine-tuned from the `pretrain` stage" in card
    for stage in ("data", "tokenizer", "shards", "pretrain", "sft"):
        assert f"| {stage} |" in card
    assert "| law | KOGL-1 | 2 | 3 | 300 | 700 | 100 | 700 |" in card
    assert "smoke-test model" in card and "hallucination" in card and "validation_loss" in card
    assert "No evaluation stage results" in card


def test_eval_report_and_scratch_base(synthetic_run):
    write_json(synthetic_run / "eval" / "report.json", {"kobest_boolq": 0.61})
    paths = write_papers(synthetic_run, "pretrain")  # config and metrics from the (complete) manifest
    card = paths["card"].read_text()
    assert "Trained from scratch" in card and "`tiny`" in card
    assert "kobest_boolq" in card
    assert json.loads(paths["bom"].read_text())["evaluation"]["eval_stage"] == {"kobest_boolq": 0.61}
    # a complete eval stage: its manifest metrics (flattened), and report.json's hash
    write_json(synthetic_run / "eval" / "manifest.json", manifest("eval", metrics={"perplexity": {"dpo": 12.5}}))
    paths = write_papers(synthetic_run, "pretrain")
    ev = json.loads(paths["bom"].read_text())["evaluation"]
    assert ev["eval_stage"] == {"perplexity.dpo": 12.5}
    assert ev["eval_report_sha256"] == sha(synthetic_run / "eval" / "report.json")
    assert "| perplexity.dpo | 12.5 |" in paths["card"].read_text()


def test_failures_name_the_folder(synthetic_run, tmp_path):
    with pytest.raises(PapersError, match="dpo/final does not exist"):
        write_papers(synthetic_run, "dpo")
    with pytest.raises(PapersError, match="training stages only"):
        write_papers(synthetic_run, "shards", final_dir=tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(PapersError, match="could not write the model card"):
        write_papers(synthetic_run, "sft", out_dir=blocker)


def test_write_stage_papers_fails_loudly(synthetic_run):
    from types import SimpleNamespace

    from kgov_train.train.final import write_stage_papers

    ctx = SimpleNamespace(stage_dir=synthetic_run / "sft", run_dir=synthetic_run, world_size=1, cfg=None)
    with pytest.raises(PapersError, match="could not collect the facts for the model card of .*sft/final"):
        write_stage_papers(ctx, object(), synthetic_run / "sft" / "final")


def test_regenerate_keeps_sealed_papers(synthetic_run):
    paths = write_papers(synthetic_run, "pretrain")
    m = json.loads((synthetic_run / "pretrain" / "manifest.json").read_text())
    m["outputs"] += [{"path": f"final/{p.name}", "sha256": sha(p), "bytes": 1} for p in paths.values()]
    write_json(synthetic_run / "pretrain" / "manifest.json", m)
    sealed = {p: p.read_bytes() for p in paths.values()}
    out = subprocess.run([sys.executable, "-m", "kgov_train.papers", str(synthetic_run)], capture_output=True,
                         text=True, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert all(p.read_bytes() == b for p, b in sealed.items())  # the seal still holds
    assert (synthetic_run / "pretrain" / "papers" / "bom.json").is_file()
    assert (synthetic_run / "pretrain" / "papers" / "bom.cdx.json").is_file()
    assert str(synthetic_run / "sft" / "final" / "bom.cdx.json") in out.stdout.split()
    assert (synthetic_run / "sft" / "final" / "MODEL_CARD.md").is_file()  # not sealed there: written in final/
    assert str(synthetic_run / "sft" / "final" / "bom.json") in out.stdout.split()
    assert regenerate(synthetic_run, ["sft"])


# ---------------------------------------------------------------------------------------------------------------------
# Real training: the papers save_final writes into every final/
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_training_writes_papers_into_every_final(smoke_run):
    from tests.helpers import compose_cfg

    run = smoke_run
    recipe = compose_cfg(["recipe=smoke"]).data
    data_m = json.loads((run / "data" / "manifest.json").read_text())
    index = json.loads((run / "shards" / "index.json").read_text())
    order = ["data", "tokenizer", "shards", "pretrain", "sft_general", "sft_domain", "dpo"]
    for stage, base in (("pretrain", "Trained from scratch"), ("sft_general", "Fine-tuned from the `pretrain` stage"),
                        ("sft_domain", "Fine-tuned from the `sft_general` stage"),
                        ("dpo", "Fine-tuned from the `sft_domain` stage")):
        final = run / stage / "final"
        m = json.loads((run / stage / "manifest.json").read_text())
        sealed = {o["path"] for o in m["outputs"]}
        assert {"final/MODEL_CARD.md", "final/bom.json", "final/bom.cdx.json"} <= sealed, stage  # in the manifest
        cdx_text = (final / "bom.cdx.json").read_text()
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(cdx_text) is None, stage
        cdx = json.loads(cdx_text)["metadata"]["component"]
        assert (cdx["type"], cdx["name"], cdx["version"]) == ("machine-learning-model", "smoke", stage)
        assert "modelCard" in cdx and {c["name"] for c in cdx["components"]} == {
            p for p in sealed if p.startswith("final/") and p.removeprefix("final/") not in PAPERS}
        bom = json.loads((final / "bom.json").read_text())
        assert bom["format"] == "kgov-bom/1" and bom["model"]["recipe_name"] == "smoke"

        files = bom["data"]["files"]
        assert len(files) == len(data_m["inputs"]) > 0
        for f in files:
            assert f["sha256"] == sha(Path(f["path"])), f["path"]  # traceable to today's bytes
            assert f["source"] == recipe.source and f["license"] == recipe.license
        assert sum(f["docs_kept"] for f in files) == data_m["metrics"]["docs_kept"]
        assert sum(f["docs_rejected"] for f in files) == data_m["metrics"]["docs_rejected"]
        src = bom["data"]["sources"][recipe.source]
        assert src["license"] == recipe.license
        assert src["tokens"]["train"] == index["splits"]["train"]["sources"][recipe.source]["tokens"]
        assert src["tokens"]["validation"] == index["splits"]["validation"]["sources"][recipe.source]["tokens"]
        assert bom["shards"]["train_tokens"] == index["splits"]["train"]["tokens"]
        assert bom["tokenizer"]["sha256"] == sha(final / "tokenizer.json")

        for name in KEY_PACKAGES:
            try:
                assert bom["software"]["installed"][name] == metadata.version(name), name
            except metadata.PackageNotFoundError:
                assert bom["software"]["installed"][name] is None
        assert bom["software"]["packages"] == m["versions"] and bom["software"]["git_commit"] == m["git_commit"]

        chain = [s["stage"] for s in bom["stages"]]
        assert chain == order[: order.index(stage) + 1]  # the lineage, named SFT stages included
        every = {("sft_general", "sft.jsonl"), ("sft_domain", "constitution_qa.jsonl"),
                 ("sft_domain", "ChatbotData.csv"), ("dpo", "dpo.jsonl"), ("dpo", "dpo_helpful.jsonl")}
        finetune = {(f["stage"], Path(f["path"]).name) for f in bom["data"]["finetune_files"]}
        assert finetune == {(s, n) for s, n in every if order.index(s) <= order.index(stage)}, stage
        for s in bom["stages"][:-1]:
            up = json.loads((run / s["stage"] / "manifest.json").read_text())
            assert s["fingerprint"] == up["fingerprint"] and s["outputs"] == up["outputs"]
        assert bom["stages"][-1]["config"] == m["config"] and bom["stages"][-1]["fingerprint"] == m["fingerprint"]
        weights = {o["path"]: o["sha256"] for o in m["outputs"]}
        for o in bom["model"]["files"]:
            assert weights[f"final/{o['path']}"] == o["sha256"]  # the files the manifest sealed afterwards

        c = bom["compute"]
        assert c["world_size"] == m["metrics"]["world_size"] == 2 and c["device"] == "cpu"
        assert c["parameters"] == m["metrics"]["parameters"] and c["tokens_seen"] == m["metrics"]["tokens_seen"]
        assert c["training_flops"] > 0 and c["device_hours"] > 0
        if stage == "pretrain":
            assert c["training_flops"] == m["metrics"]["flops_per_token"] * m["metrics"]["tokens_seen"]

        card = (final / "MODEL_CARD.md").read_text()
        assert base in card, stage
        assert f"| {stage} | running |" in card  # written before the manifest was sealed
        for up in chain[:-1]:
            assert f"| {up} | complete |" in card
        assert recipe.license in card and "smoke-test model" in card
