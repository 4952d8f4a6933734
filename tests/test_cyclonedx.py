"""bom.cdx.json: the CycloneDX 1.6 ML-BOM beside MODEL_CARD.md and bom.json, from the papers' synthetic run folder."""

from __future__ import annotations

import json
import socket
from importlib import metadata

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

import tests.test_papers as TP
from kgov_train.papers import PapersError, write_papers
from kgov_train.papers import cyclonedx as cdx
from kgov_train.papers.bom import KEY_PACKAGES
from kgov_train.papers.cdx_card import model_card
from kgov_train.papers.facts import gather

synthetic_run = TP.synthetic_run  # data (two sources, two licences), tokenizer, shards, pretrain, a running sft
sha = TP.sha


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test; the validator is built afresh under the guard."""
    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    cdx._validator.cache_clear()
    yield
    cdx._validator.cache_clear()


def all_components(doc: dict) -> list[dict]:
    out, stack = [], [doc["metadata"]["component"], *doc["components"]]
    while stack:
        c = stack.pop()
        out.append(c)
        stack += c.get("components", [])
    return out


def licence_of(c: dict) -> dict:
    (entry,) = c["licenses"]
    return entry["license"]


def test_cyclonedx_of_a_fine_tuned_model(synthetic_run, offline):
    run = synthetic_run
    paths = write_papers(run, "sft", config=TP.SFT_CONFIG, recipe_name="demo", device="cpu",
                         metrics={"world_size": 2, "parameters": 1000, "tokens_seen": 300, "steps": 6})
    final = run / "sft" / "final"
    assert paths["cyclonedx"] == final / "bom.cdx.json"
    text = paths["cyclonedx"].read_text(encoding="utf-8")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None  # the 1.6 schema, offline
    doc = json.loads(text)
    assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.6")
    kgov_bom = json.loads(paths["bom"].read_text())
    assert doc["metadata"]["timestamp"].replace("+00:00", "+0000") == kgov_bom["generated_at"]
    tools = {t["name"]: t["version"] for t in doc["metadata"]["tools"]["components"]}
    assert tools["kgov-train"] == metadata.version("kgov-train")

    # the model: machine-learning-model with its weights' hash, a model card and kgov:* properties
    model = doc["metadata"]["component"]
    assert (model["type"], model["name"], model["version"]) == ("machine-learning-model", "demo", "sft")
    assert model["hashes"] == [{"alg": "SHA-256", "content": sha(final / "model.safetensors")}]
    assert {c["name"]: c["hashes"][0]["content"] for c in model["components"]} == {
        "final/model.safetensors": sha(final / "model.safetensors"), "final/tokenizer.json": sha(final / "tokenizer.json")}
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["kgov:parameters"] == "1000" and props["kgov:stages"] == "data,tokenizer,shards,pretrain,sft"
    assert props["kgov:stage:pretrain"].startswith("status complete, fingerprint fp-pretrain")
    card = model["modelCard"]
    params = card["modelParameters"]
    assert params["approach"] == {"type": "supervised"} and params["task"] == "text-generation"
    assert params["inputs"][0]["format"].startswith("text") and params["outputs"][0]["format"].startswith("text")
    risks = [r["name"] for r in card["considerations"]["ethicalConsiderations"]]
    assert any("licence KOGL-1 (sources law: 3 documents" in r for r in risks)
    assert any("Personal data found in source law: phone 2" in r for r in risks)
    assert any("smoke-test" in x for x in card["considerations"]["technicalLimitations"])

    by_ref = {c["bom-ref"]: c for c in all_components(doc)}
    assert len(by_ref) == len(all_components(doc))  # bom-refs are unique
    # a data component per source, with its licence (SPDX id where it is one) and its input files' hashes
    sources = {c["name"]: c for c in doc["components"] if c["type"] == "data" and c["bom-ref"].count(":") == 1}
    assert set(sources) == {"law", "news"}
    assert licence_of(sources["news"]) == {"id": "CC-BY-4.0"}
    assert licence_of(sources["law"]) == {"name": "KOGL-1"}  # not an SPDX id: a licence name
    corpus = run.parent / "corpus"
    for name, files in (("law", ["law_a.txt", "law_b.txt"]), ("news", ["news.jsonl"])):
        nested = {c["name"]: c for c in sources[name]["components"]}
        assert set(nested) == {str(corpus / f) for f in files}
        for f in files:
            assert nested[str(corpus / f)]["hashes"] == [{"alg": "SHA-256", "content": sha(corpus / f)}]
        assert sources[name]["data"][0]["type"] == "dataset"
    assert sources["law"]["data"][0]["sensitiveData"] == ["phone: 2 found and pseudonymised"]
    sft_data = by_ref["data:sft:sft.jsonl"]
    assert sft_data["type"] == "data" and sft_data["hashes"][0]["content"] == sha(run.parent / "sft.jsonl")
    # the model card's datasets are the data components
    refs = [d["ref"] for d in params["datasets"]]
    assert sorted(refs) == sorted(c["bom-ref"] for c in doc["components"] if c["type"] == "data")

    # the base: the pretrain stage's sealed weights
    base = by_ref["model:demo@pretrain"]
    assert base["type"] == "machine-learning-model" and "modelCard" in base
    assert base["hashes"][0]["content"] == sha(run / "pretrain" / "final" / "model.safetensors")

    # the software, as installed, with purls
    software = {c["name"]: c for c in doc["components"] if c["type"] in ("library", "framework")}
    for name in KEY_PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            assert name not in software
            continue
        assert software[name]["version"] == version, name
        purl = PackageURL.from_string(software[name]["purl"])
        assert (purl.type, purl.name, purl.version) == ("pypi", name, version)
    assert {p["name"]: p["value"] for p in software["torch"]["properties"]} == {"kgov:version_at_training": "9.9"}

    # dependencies: every ref resolves; the model depends on its datasets, base and software
    deps = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    for ref, on in deps.items():
        assert ref in by_ref and all(r in by_ref for r in on), ref
    assert set(deps[model["bom-ref"]]) == set(refs) | {base["bom-ref"]} | {c["bom-ref"] for c in software.values()}


def test_cyclonedx_of_an_evaluated_pretrain(synthetic_run, offline):
    run = synthetic_run
    TP.write_json(run / "eval" / "report.json", {"model_stage": "pretrain"})
    TP.write_json(run / "eval" / "manifest.json", TP.manifest("eval", metrics={
        "accuracy_by_stage": {"pretrain": {"kobest_boolq": 0.61}, "sft": {"kobest_boolq": 0.7}},
        "perplexity_by_stage": {"pretrain": {"all": 12.5, "law": 10.0}},
        "bits_per_byte_by_stage": {"pretrain": {"heldout:law": 0.9}, "base": {"heldout:law": 1.1}}}))
    doc = json.loads(write_papers(run, "pretrain")["cyclonedx"].read_text())
    model = doc["metadata"]["component"]
    card = model["modelCard"]
    assert card["modelParameters"]["approach"] == {"type": "self-supervised"}
    assert card["modelParameters"]["modelArchitecture"] == "llama"  # the scratch model recipe
    metrics = {(m["type"], m["slice"]): m["value"] for m in card["quantitativeAnalysis"]["performanceMetrics"]}
    assert metrics[("accuracy", "eval: kobest_boolq")] == "0.61"  # this stage's, not sft's 0.7
    assert metrics[("perplexity", "eval: all")] == "12.5" and metrics[("perplexity", "eval: law")] == "10"
    assert metrics[("bits-per-byte", "eval: heldout:law")] == "0.9"
    assert metrics[("validation_loss", "training stage pretrain (own held-out split)")] == "4.5"
    assert "0.7" not in metrics.values()
    assert not any(c["type"] == "machine-learning-model" for c in doc["components"])  # from scratch: no base
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["kgov:base"] == "scratch" and props["kgov:base:model:hidden_size"] == "64"


def test_cyclonedx_imported_base_with_bundle_and_approaches(synthetic_run, offline):
    run = synthetic_run
    f = gather(run, "pretrain", run / "pretrain" / "final")
    weights = run / "pretrain" / "final" / "model.safetensors"
    f["base"] = {"kind": "imported", "name": "Qwen2.5-0.5B", "path": "/models/qwen", "license": "Apache-2.0",
                 "architecture": "Qwen2ForCausalLM", "model_type": "qwen2", "parameters": 494_000_000,
                 "files": [{"path": "model.safetensors", "sha256": sha(weights), "bytes": 10},
                           {"path": "config.json", "sha256": "0" * 64, "bytes": 2}],
                 "bundle": {"bundle": "/bundles/b1", "entry": "qwen", "kind": "model", "path": "/bundles/b1/qwen",
                            "assets_sha256": "1" * 64, "source_id": "hf:Qwen/Qwen2.5-0.5B", "revision": "abc",
                            "license": "Apache-2.0", "files": 2, "bytes": 12}}
    doc = json.loads(cdx.render_cyclonedx(f))
    (base,) = [c for c in doc["components"] if c["type"] == "machine-learning-model"]
    assert base["name"] == "Qwen2.5-0.5B" and licence_of(base) == {"id": "Apache-2.0"}
    assert base["hashes"] == [{"alg": "SHA-256", "content": sha(weights)}]
    assert base["modelCard"]["modelParameters"]["modelArchitecture"] == "Qwen2ForCausalLM / qwen2"
    (ext,) = base["externalReferences"]
    assert ext["type"] == "distribution" and ext["url"] == "file:///bundles/b1/assets.json"
    assert "entry qwen" in ext["comment"] and "revision abc" in ext["comment"]
    assert ext["hashes"] == [{"alg": "SHA-256", "content": "1" * 64}]
    props = {p["name"]: p["value"] for p in base["properties"]}
    assert props["kgov:bundle:revision"] == "abc" and props["kgov:bundle:source_id"] == "hf:Qwen/Qwen2.5-0.5B"
    assert props["kgov:bundle:assets_sha256"] == "1" * 64 and props["kgov:bundle:files"] == "2"
    deps = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert base["bom-ref"] in deps[doc["metadata"]["component"]["bom-ref"]]
    risks = [r["name"] for r in doc["metadata"]["component"]["modelCard"]["considerations"]["ethicalConsiderations"]]
    assert "Built on the foundation model Qwen2.5-0.5B under licence Apache-2.0" in risks
    # the approach per kind of stage (see kgov_train.papers.cdx_card.APPROACH)
    for stage, approach in (("sft_general", "supervised"), ("dpo", "supervised"), ("pretrain", "self-supervised")):
        assert model_card({**f, "stage": stage}, [])["modelParameters"]["approach"]["type"] == approach


def test_an_invalid_document_is_refused_and_nothing_written(synthetic_run, offline):
    m = json.loads((synthetic_run / "sft" / "manifest.json").read_text())
    m["inputs"][1]["sha256"] = "not-a-sha256"  # the sft data file: a hash that is not hex
    TP.write_json(synthetic_run / "sft" / "manifest.json", m)
    final = synthetic_run / "sft" / "final"
    with pytest.raises(PapersError) as e:
        write_papers(synthetic_run, "sft")
    msg = str(e.value)
    assert f"{final / 'bom.cdx.json'} is not a valid CycloneDX 1.6 document" in msg
    assert "hashes[0].content (in 'data:sft:sft.jsonl'): 'not-a-sha256' does not match" in msg
    assert not any((final / p).exists() for p in ("MODEL_CARD.md", "bom.json", "bom.cdx.json"))
