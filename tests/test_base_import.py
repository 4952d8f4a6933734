"""The base stage's verification of a local foundation model folder (kgov_train.foundation, kgov_train.stages.base):
real transformers and safetensors on tiny random models of three architectures (tests/foundation.py), each refusal
with its message, and hashing that streams."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from kgov_train.foundation import BaseImportError, base_problems, verify_base
from kgov_train.manifest import Manifest, hash_entries
from kgov_train.run_folder import StageContext
from kgov_train.stages import base as base_stage
from tests.foundation import gpt_neox, llama_sentencepiece, qwen2_byte_level
from tests.helpers import REPO_ROOT

BUILDERS = {"llama": llama_sentencepiece, "qwen2": qwen2_byte_level, "gpt_neox": gpt_neox}
ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "gpt_neox": "GPTNeoXForCausalLM"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("foundation")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture
def llama(models, tmp_path) -> Path:
    """A copy of the llama folder this test may break."""
    return Path(shutil.copytree(models["llama"], tmp_path / "llama"))


def verify(folder, **kw):
    kw.setdefault("license", "apache-2.0")
    return verify_base(folder, name=kw.pop("name", "tiny"), progress=False, **kw)


def refused(folder, **kw) -> str:
    with pytest.raises(BaseImportError) as e:
        verify(folder, **kw)
    return str(e.value)


def weight_file(folder: Path) -> Path:
    return folder / "model.safetensors"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# What a sound folder yields
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_each_architecture_verifies(models, arch):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = models[arch]
    report = verify(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    assert report.parameters == sum(p.numel() for p in model.parameters())
    assert report.architecture == ARCH[arch]
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    assert report.model_type == config.model_type and report.vocab_size == config.vocab_size
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert report.tokenizer_size == len(tok) and report.embedding_rows == model.get_input_embeddings().weight.shape[0]
    assert report.special_tokens["eos"] == {"token": str(tok.eos_token), "id": tok.eos_token_id}
    assert report.chat_template == bool(tok.chat_template)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert [f["path"] for f in report.files] == [str(p.relative_to(folder)) for p in files]
    assert all(f["sha256"] == sha256(folder / f["path"]) for f in report.files)
    assert report.total_bytes == sum(p.stat().st_size for p in files)
    assert report.weight_format == "safetensors" and not report.pickle_files and report.remote_code is None
    assert report.dtype == str(next(model.parameters()).dtype).removeprefix("torch.")
    assert json.loads(report.to_json())["parameters"] == report.parameters
    assert base_problems(folder, name="tiny", license="apache-2.0") == []


def test_sharded_checkpoint_verifies_and_a_missing_shard_is_named(llama):
    state = load_file(weight_file(llama))
    weight_file(llama).unlink()
    names = sorted(state)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2]), 1):
        shard = f"model-{i:05d}-of-00002.safetensors"
        save_file({n: state[n] for n in part}, llama / shard, metadata={"format": "pt"})
        weight_map.update({n: shard for n in part})
    (llama / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    report = verify(llama)
    assert report.sharded and report.weight_files == ["model-00001-of-00002.safetensors",
                                                      "model-00002-of-00002.safetensors"]
    assert report.tensors == len(state)
    (llama / "model-00002-of-00002.safetensors").unlink()
    assert "model-00002-of-00002.safetensors is named in model.safetensors.index.json but missing" in refused(llama)


def test_licence_file_and_readme_are_recorded_and_a_contradiction_warned(llama):
    (llama / "LICENSE").write_text("\n  Apache License\nVersion 2.0, January 2004\n")
    (llama / "README.md").write_text("---\nlicense: other\nlicense_name: llama3.2\n---\n# Tiny\n")
    report = verify(llama, license="apache-2.0")
    assert report.license_file == {"path": "LICENSE", "sha256": sha256(llama / "LICENSE"),
                                   "first_line": "Apache License"}
    assert report.readme_license == "other (llama3.2)"
    assert any("base.license: 'apache-2.0' but" in w and "README.md says license: other (llama3.2)" in w
               for w in report.warnings)
    assert not any("base.license" in w for w in verify(llama, license="llama3.2").warnings)


def test_progress_bar_counts_bytes(models, capsys):
    verify_base(models["llama"], name="tiny", license="mit", progress=True)
    assert "sha256 llama" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# Refusals, each one line naming the file and the key
# ---------------------------------------------------------------------------------------------------------------------


def test_a_hub_id_is_refused():
    message = refused("meta-llama/Llama-2-7b")
    assert "base.path: 'meta-llama/Llama-2-7b' is not a local folder" in message
    assert "only local folders are accepted" in message


def test_pickle_weights_refused_unless_allowed(llama):
    expected = verify(llama).parameters
    state = load_file(weight_file(llama))
    weight_file(llama).unlink()
    torch.save(state, llama / "pytorch_model.bin")
    message = refused(llama)
    assert (f"base.path: {llama / 'pytorch_model.bin'} is a pickle checkpoint (loading it can run code); convert it "
            "to safetensors or remove it, or set base.allow_pickle=true") in message
    report = verify(llama, allow_pickle=True)
    assert report.allow_pickle and report.pickle_files == ["pytorch_model.bin"] and report.weight_format == "pickle"
    assert report.parameters == expected and report.tensors == len(state)


def test_remote_code_refused_unless_trusted(llama, monkeypatch, tmp_path):
    import transformers.dynamic_module_utils as dmu

    config = json.loads((llama / "config.json").read_text())
    (llama / "configuration_kgovtest.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass KgovTestConfig(LlamaConfig):\n    model_type = 'kgov_test'\n")
    (llama / "modeling_kgovtest.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_kgovtest import KgovTestConfig\n\n\n"
        "class KgovTestForCausalLM(LlamaForCausalLM):\n    config_class = KgovTestConfig\n")
    auto_map = {"AutoConfig": "configuration_kgovtest.KgovTestConfig",
                "AutoModelForCausalLM": "modeling_kgovtest.KgovTestForCausalLM"}
    config.update(model_type="kgov_test", auto_map=auto_map, architectures=["KgovTestForCausalLM"])
    (llama / "config.json").write_text(json.dumps(config))
    message = refused(llama)
    assert (f"base.path: {llama / 'config.json'} has auto_map (AutoConfig=configuration_kgovtest.KgovTestConfig"
            in message)
    assert "set base.trust_remote_code=true" in message
    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # the folder's code is copied there
    monkeypatch.setattr(sys, "path", list(sys.path))
    report = verify(llama, trust_remote_code=True)
    assert report.trust_remote_code and report.remote_code == {"config.json": auto_map}
    assert report.model_type == "kgov_test" and report.architecture == "KgovTestForCausalLM"


def test_unknown_licence_refused_unless_allowed(llama):
    for value in ("unknown", "", None):
        message = refused(llama, license=value)
        assert "is not a licence" in message and "base.allow_unknown_license=true" in message
    report = verify(llama, license="unknown", allow_unknown_license=True)
    assert report.allow_unknown_license and report.license == "unknown"


def test_missing_config_refused(llama):
    (llama / "config.json").unlink()
    assert f"base.path: {llama / 'config.json'} is missing; not a Hugging Face model folder" in refused(llama)


def test_missing_tokenizer_refused(llama):
    for f in ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt"):
        (llama / f).unlink(missing_ok=True)
    assert f"base.path: {llama} has no tokenizer" in refused(llama)


@pytest.mark.parametrize("keep, why", [(16, "header length"), (-64, "beyond the file's")])
def test_truncated_safetensors_refused(llama, keep, why):
    path = weight_file(llama)
    size = path.stat().st_size
    os.truncate(path, keep if keep > 0 else size + keep)
    message = refused(llama)
    assert f"base.path: {path} is truncated or corrupt (" in message and why in message


def test_padded_safetensors_refused(llama):
    with open(weight_file(llama), "ab") as f:
        f.write(b"\0" * 10)
    assert "+ data" in refused(llama) and "model.safetensors is truncated or corrupt" in refused(llama)


def test_weight_whose_shape_differs_from_the_config_refused(llama):
    state = load_file(weight_file(llama))
    name = next(n for n in sorted(state) if "mlp" in n and state[n].dim() == 2)
    rows, cols = state[name].shape
    state[name] = torch.zeros(rows + 1, cols, dtype=state[name].dtype)
    save_file(state, weight_file(llama), metadata={"format": "pt"})
    message = refused(llama)
    assert "1 weight(s) do not match config.json's shapes" in message
    assert f"{name} is [{rows + 1}, {cols}] in model.safetensors, config.json makes [{rows}, {cols}]" in message


def test_missing_weight_refused(llama):
    state = load_file(weight_file(llama))
    name = next(n for n in sorted(state) if "mlp" in n)
    del state[name]
    save_file(state, weight_file(llama), metadata={"format": "pt"})
    assert f"1 model parameter(s) not in the weights: {name}" in refused(llama)


def test_tokenizer_larger_than_the_embedding_refused(llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama, local_files_only=True)
    rows = json.loads((llama / "config.json").read_text())["vocab_size"]
    tok.add_tokens([f"<kgov_extra_{i}>" for i in range(rows + 3 - len(tok))])
    tok.save_pretrained(llama)
    assert f"the tokenizer has {rows + 3} tokens but the embedding has {rows} rows" in refused(llama)


def test_all_cheap_problems_are_raised_together_before_hashing(llama, monkeypatch):
    import kgov_train.foundation.verify as verify_module

    monkeypatch.setattr(verify_module, "hash_files", lambda *a, **k: pytest.fail("hashed a refused folder"))
    torch.save({}, llama / "training_args.bin")
    (llama / "config.json").unlink()
    with pytest.raises(BaseImportError) as e:
        verify(llama, license="unknown", name="")
    assert len(e.value.problems) == 4, e.value.problems
    assert [p.split(":")[0] for p in e.value.problems] == ["base.name", "base.license", "base.path", "base.path"]


# ---------------------------------------------------------------------------------------------------------------------
# Hashing streams; the recipe check loads no torch
# ---------------------------------------------------------------------------------------------------------------------


def test_hashing_streams_a_large_file_in_small_memory(tmp_path):
    size = 200 << 20
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    path, h = tmp_path / "big" / "model.safetensors", hashlib.sha256()
    path.parent.mkdir()
    with open(path, "wb") as f:
        for block in (struct.pack("<Q", len(header)) + header, *(bytes(8 << 20) for _ in range(size // (8 << 20)))):
            f.write(block)
            h.update(block)
    # The child's peak RSS starts at its parent's (pytest, torch loaded) across fork and exec: clear_refs 5 resets
    # it (VmHWM); tracemalloc counts what Python allocates while hashing.
    code = ("import json, sys, tracemalloc; from pathlib import Path\n"
            "from kgov_train.foundation.hashing import hash_files\n"
            "from kgov_train.foundation.weights import read_header\n"
            "def hwm(): return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
            "open('/proc/self/clear_refs', 'w').write('5')\n"
            "f = Path(sys.argv[1]); read_header(f); before = hwm(); tracemalloc.start()\n"
            "sha = hash_files(f.parent, [f], progress=False)[0]['sha256']\n"
            "print(json.dumps({'sha': sha, 'before': before, 'after': hwm(),"
            " 'traced': tracemalloc.get_traced_memory()[1],"
            " 'torch': 'torch' in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO_ROOT,
                         check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["sha"] == h.hexdigest()
    assert got["after"] - got["before"] < 16 * 1024 and got["after"] < 120 * 1024, got  # KiB, of a 200 MiB file
    assert got["traced"] < 4 << 20 and not got["torch"], got


def test_recipe_check_loads_no_torch(models):
    code = ("import sys; from omegaconf import OmegaConf; from kgov_train.stages import base\n"
            f"cfg = OmegaConf.create({{'base': {{'path': {str(models['llama'])!r}, 'name': 'tiny', 'license': 'mit',"
            " 'allow_pickle': False, 'trust_remote_code': False, 'allow_unknown_license': False}})\n"
            "assert base.check(cfg, 'base') == [], base.check(cfg, 'base')\n"
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


# ---------------------------------------------------------------------------------------------------------------------
# The stage module
# ---------------------------------------------------------------------------------------------------------------------


def _cfg(path, **kw):
    return OmegaConf.create({"base": {"path": str(path), "name": "tiny-llama", "license": "apache-2.0",
                                      "allow_pickle": False, "trust_remote_code": False,
                                      "allow_unknown_license": False, **kw}})


def test_stage_check_and_external_inputs(llama):
    files = sorted(p for p in llama.rglob("*") if p.is_file())
    (llama / ".git" / "lfs").mkdir(parents=True)
    (llama / ".git" / "lfs" / "object").write_bytes(b"a second copy of the weights")
    assert base_stage.check(_cfg(llama), "base") == []
    assert base_stage.external_inputs(_cfg(llama), "base") == files
    problems = base_stage.check(_cfg("meta-llama/Llama-2-7b", license="unknown"), "base")
    assert len(problems) == 2 and problems[0].startswith("base.license:") and "not a local folder" in problems[1]
    assert base_stage.external_inputs(_cfg("meta-llama/Llama-2-7b"), "base") == []


def test_stage_run_writes_base_json_from_the_manifests_hashes(llama, tmp_path):
    cfg = _cfg(llama)
    stage_dir = tmp_path / "run" / "base"
    inputs = hash_entries(base_stage.external_inputs(cfg, "base"))  # what the pipeline records before run()
    Manifest(stage="base", inputs=inputs).save(stage_dir)
    ctx = StageContext(cfg=cfg, run_dir=stage_dir.parent, stage_dir=stage_dir, upstream={})
    result = base_stage.run(ctx)
    assert result.outputs == ["base.json"] and result.metrics["parameters"] > 0
    report = json.loads((stage_dir / "base.json").read_text())
    assert [(str(llama / f["path"]), f["sha256"]) for f in report["files"]] == [(i["path"], i["sha256"])
                                                                              for i in inputs]
    assert report["name"] == "tiny-llama" and report["license"] == "apache-2.0"
    # the weights are read once: run() takes the manifest's hashes, it does not hash the folder again
    inputs[0]["sha256"] = "0" * 64
    Manifest(stage="base", inputs=inputs).save(stage_dir)
    base_stage.run(ctx)
    assert json.loads((stage_dir / "base.json").read_text())["files"][0]["sha256"] == "0" * 64
    assert "timings" not in report and "hash_seconds" in result.metrics
