"""Carrying assets across the air gap (kgov_train.carry, `kgov-train assets pack|verify`): the hub's two download
layouts built with huggingface_hub's own writers around tiny real folders, the bundle round trip, each kind of
damage named, exit codes, and a base model imported from a bundle entry recorded in base.json and the papers."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir
from huggingface_hub._local_folder import write_download_metadata
from huggingface_hub.file_download import _create_symlink
from omegaconf import OmegaConf

from kgov_train import carry
from kgov_train.carry.card import detect_kind, licence
from kgov_train.carry.cli import main as assets
from kgov_train.foundation import BaseImportError
from kgov_train.manifest import Manifest, hash_entries
from kgov_train.papers.bom import build_bom
from kgov_train.papers.card import render_card
from kgov_train.papers.facts import gather
from kgov_train.run_folder import StageContext
from kgov_train.stages import base as base_stage
from tests import foundation as F

COMMIT = "4e1a9c0b6f2d8e7a5c3b1d9f0e2a4c6b8d0f1e3a"
DATA_COMMIT = "7d1c6d2e8f3a9b0c1d2e3f4a5b6c7d8e9f0a1b2c"
KOBEST_README = """---
language:
- ko
license: cc-by-sa-4.0
pretty_name: KoBEST
configs:
- config_name: boolq
  data_files:
  - split: train
    path: boolq/train.jsonl
  - split: test
    path: boolq/test.jsonl
- config_name: copa
  data_files:
  - split: test
    path: copa/test.jsonl
---
# KoBEST (tiny copy for tests)
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_sha1(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def hub_etag(path: Path) -> str:
    """What the hub serves as a file's etag: the sha256 for an LFS file (weights, parquet), else the git blob sha1."""
    return sha256(path) if path.suffix in (".safetensors", ".parquet", ".model") else git_sha1(path)


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def kobest(dest: Path) -> Path:
    """A tiny folder laid out like skt/kobest_v1: a dataset card with `configs:`, jsonl files per config."""
    (dest / "boolq").mkdir(parents=True)
    (dest / "copa").mkdir()
    (dest / "README.md").write_text(KOBEST_README, encoding="utf-8")
    rows = [{"paragraph": "대한민국의 수도는 서울이다.", "question": "서울은 수도인가?", "label": 1},
            {"paragraph": "헌법은 최고 규범이다.", "question": "법률이 헌법보다 위인가?", "label": 0}]
    for rel in ("boolq/train.jsonl", "boolq/test.jsonl"):
        (dest / rel).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (dest / "copa" / "test.jsonl").write_text(json.dumps({"premise": "비가 왔다.", "label": 0}) + "\n")
    return dest


def local_dir(src: Path, dest: Path, commit: str = COMMIT) -> Path:
    """`snapshot_download(repo_id, local_dir=dest)`: the files, and per file the metadata the hub writes."""
    shutil.copytree(src, dest)
    for f in files_of(dest):
        write_download_metadata(dest, f.relative_to(dest).as_posix(), commit, hub_etag(f))
    return dest


def hub_cache(src: Path, cache: Path, repo_type: str, repo_id: str, commit: str) -> Path:
    """The hub cache: blobs named by etag, snapshots/<commit>/ of relative symlinks (the hub's own
    _create_symlink), refs/main; returns the snapshot folder."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for f in files_of(src):
        blob = repo / "blobs" / hub_etag(f)
        shutil.copyfile(f, blob)
        link = repo / "snapshots" / commit / f.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        _create_symlink(str(blob), str(link))
    return repo / "snapshots" / commit


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return F.cached(F.llama_sentencepiece, tmp_path_factory.getbasetemp() / "foundation")


@pytest.fixture
def packed(llama, tmp_path, capsys) -> Path:
    """A bundle of a model (snapshot_download local_dir, repo id given; its card names the licence) and a dataset
    (hub cache)."""
    src = Path(shutil.copytree(llama, tmp_path / "repo"))
    (src / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n# tiny\n")
    model = local_dir(src, tmp_path / "dl" / "tiny-llama")
    data = hub_cache(kobest(tmp_path / "kobest_src"), tmp_path / "hf_cache", "dataset", "skt/kobest_v1", DATA_COMMIT)
    assert assets(["pack", str(model), str(data), "--out", str(tmp_path / "bundle"),
                   "--repo-id", "kgov/tiny-llama", "--repo-id", "skt/kobest_v1", "--no-progress"]) == 0
    capsys.readouterr()
    return tmp_path / "bundle"


def verify(bundle: Path, capsys, *extra: str) -> tuple[int, str]:
    rc = assets(["verify", str(bundle), "--no-progress", *extra])
    return rc, capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------------
# Layouts and what they say
# ---------------------------------------------------------------------------------------------------------------------


def test_pack_and_verify_round_trip(llama, tmp_path, capsys):
    model = local_dir(llama, tmp_path / "dl" / "tiny-llama")
    data = kobest(tmp_path / "kobest_v1")
    assert assets(["pack", str(model), str(data), "--out", str(tmp_path / "b")]) == 0
    out, err = capsys.readouterr()
    assert "pack b:" in err and "B" in err  # the tqdm bar over bytes, on stderr
    doc = json.loads((tmp_path / "b" / "assets.json").read_text())
    bundle_hash = sha256(tmp_path / "b" / "assets.json")
    assert f"bundle hash (sha256 of assets.json): {bundle_hash}" in out
    assert doc["format"] == "kgov-assets/1" and doc["created_at"].endswith("Z")
    m, d = doc["entries"]
    assert (m["name"], m["kind"], m["path"]) == ("tiny-llama", "model", "tiny-llama")
    assert (d["name"], d["kind"], d["license"], d["license_from"]) == ("kobest_v1", "dataset", "cc-by-sa-4.0",
                                                                       "README.md")
    # every file with its size and sha256; the hub's .cache/ bookkeeping is not carried
    assert [f["path"] for f in m["files"]] == [p.relative_to(llama).as_posix() for p in files_of(llama)]
    for f in m["files"]:
        assert f["sha256"] == sha256(llama / f["path"]) == sha256(tmp_path / "b" / "tiny-llama" / f["path"])
        assert f["bytes"] == (llama / f["path"]).stat().st_size
    assert not (tmp_path / "b" / "tiny-llama" / ".cache").exists()
    assert sorted(f["path"] for f in d["files"]) == ["README.md", "boolq/test.jsonl", "boolq/train.jsonl",
                                                     "copa/test.jsonl"]
    assert (d["source"]["layout"], d["source"]["id"], d["source"]["revision"]) == ("plain", None, None)
    rc, out = verify(tmp_path / "b", capsys)
    assert rc == 0 and "verify: OK" in out and f"bundle hash (sha256 of assets.json): {bundle_hash}" in out
    assert "OK       tiny-llama (model" in out and "OK       kobest_v1 (dataset, 4 files)" in out
    assert verify(tmp_path / "b", capsys, "--expect", bundle_hash[:16])[0] == 0
    rc, out = verify(tmp_path / "b", capsys, "--expect", "0" * 64)
    assert rc == 1 and "BUNDLE HASH DIFFERS" in out


def test_local_dir_provenance_from_the_hub_metadata(llama, tmp_path, capsys):
    model = local_dir(llama, tmp_path / "Qwen2.5-tiny")
    meta = model / ".cache" / "huggingface" / "download" / "config.json.metadata"
    assert meta.read_text().splitlines()[:2] == [COMMIT, git_sha1(llama / "config.json")]  # the real format
    bundle = carry.pack([carry.Spec(model)], tmp_path / "b", progress=False)
    (e,) = bundle.entries
    assert (e.name, e.source["layout"], e.source["revision"], e.source["id"]) == ("Qwen2.5-tiny", "local_dir",
                                                                                  COMMIT, None)
    assert any("does not record the repo id" in w for w in e.warnings)
    assert e.source["downloaded_at"].endswith("Z")
    assert e.source["files_matching_hub_etag"] == len(e.files)  # LFS (sha256) and git (sha1) etags both checked
    assert {f["path"]: f["etag"] for f in e.files}["model.safetensors"] == sha256(llama / "model.safetensors")
    # given the repo id, it names the entry; a file changed after download is noted
    (model / "generation_config.json").write_text('{"changed": true}')
    e = carry.pack([carry.Spec(model, repo_id="Qwen/Qwen2.5-0.5B")], tmp_path / "b2", progress=False).entries[0]
    assert (e.name, e.source["id"]) == ("Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B")
    assert any("differ from what the hub served" in w and "generation_config.json" in w for w in e.warnings)


def test_hub_cache_provenance_from_the_path(tmp_path, capsys):
    cache = tmp_path / "hf_cache"
    snap = hub_cache(kobest(tmp_path / "src"), cache, "dataset", "skt/kobest_v1", DATA_COMMIT)
    (repo,) = scan_cache_dir(cache).repos  # huggingface_hub itself reads the layout as a cached repo
    assert (repo.repo_id, repo.repo_type, [r.commit_hash for r in repo.revisions]) == ("skt/kobest_v1", "dataset",
                                                                                      [DATA_COMMIT])
    assert (snap / "README.md").is_symlink()
    for given in (snap, snap.parent.parent):  # the snapshot, or the repo folder at refs/main
        out = tmp_path / f"b-{given.name}"
        (e,) = carry.pack([carry.Spec(given)], out, progress=False).entries
        assert (e.name, e.kind, e.license) == ("kobest_v1", "dataset", "cc-by-sa-4.0")
        assert (e.source["layout"], e.source["id"], e.source["revision"], e.source["refs"]) == (
            "hub_cache", "skt/kobest_v1", DATA_COMMIT, ["main"])
        assert e.source["files_matching_hub_etag"] == 4
        copied = out / "kobest_v1" / "boolq" / "train.jsonl"  # the resolved content, not a link into blobs/
        assert not copied.is_symlink() and copied.read_bytes() == (snap / "boolq" / "train.jsonl").read_bytes()


def test_model_in_the_hub_cache(llama, tmp_path):
    snap = hub_cache(llama, tmp_path / "cache", "model", "kgov/tiny-llama", COMMIT)
    (e,) = carry.pack([carry.Spec(snap)], tmp_path / "b", progress=False).entries
    assert (e.name, e.kind, e.source["id"], e.source["revision"]) == ("tiny-llama", "model", "kgov/tiny-llama", COMMIT)
    assert [f["sha256"] for f in e.files] == [sha256(p) for p in files_of(llama)]


def test_licence_and_kind_from_the_files(llama, tmp_path):
    f = tmp_path / "x"
    f.mkdir()
    (f / "README.md").write_text("---\nlicense:\n- apache-2.0\n- mit\n---\n")
    assert licence(f, ["README.md"]) == ("apache-2.0, mit", "README.md")
    (f / "README.md").write_text("---\nlicense: other\nlicense_name: llama3.2\n---\n")
    assert licence(f, ["README.md"]) == ("other (llama3.2)", "README.md")
    (f / "README.md").write_text("# no card\n")
    assert licence(f, ["README.md", "LICENSE.txt", "NOTICE"]) == ("LICENSE.txt", "file")
    assert licence(f, ["README.md"]) == ("unknown", None)
    tok = F.cached(F.llama_sentencepiece, tmp_path, weights=False)
    assert detect_kind(tok, [p.name for p in files_of(tok)]) == "tokenizer"
    assert detect_kind(llama, [p.name for p in files_of(llama)]) == "model"
    assert detect_kind(f, ["README.md", "data/train.parquet"]) == "dataset"
    assert detect_kind(f, ["README.md"]) is None


# ---------------------------------------------------------------------------------------------------------------------
# Damage, named
# ---------------------------------------------------------------------------------------------------------------------


def test_a_flipped_byte_is_named(packed, capsys):
    weights = packed / "tiny-llama" / "model.safetensors"
    expected = sha256(weights)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    rc, out = verify(packed, capsys)
    assert rc == 1
    assert f"CHANGED  tiny-llama/model.safetensors: sha256 expected {expected}, found {sha256(weights)}" in out
    assert "OK       kobest_v1 (dataset" in out and "verify: FAILED (1 changed)" in out


def test_missing_and_extra_files_are_named(packed, capsys):
    (packed / "kobest_v1" / "boolq" / "test.jsonl").unlink()
    (packed / "tiny-llama" / "notes.txt").write_text("added on the way")
    (packed / "stray.bin").write_bytes(b"x")
    rc, out = verify(packed, capsys)
    assert rc == 1
    assert "MISSING  kobest_v1/boolq/test.jsonl" in out
    assert "EXTRA    tiny-llama/notes.txt" in out and "EXTRA    stray.bin" in out
    assert "verify: FAILED (1 missing, 2 extra)" in out
    rc = assets(["verify", str(packed), "--json", "--no-progress"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and not doc["ok"] and doc["stray"] == [str(packed / "stray.bin")]
    assert doc["entries"]["kobest_v1"]["problems"][0]["what"] == "missing"


def test_bad_input_is_one_line_and_exit_2(packed, llama, tmp_path, capsys):
    def refused(*argv: str) -> str:
        assert assets(list(argv)) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    assert f"{tmp_path / 'nope'}: does not exist" in refused("pack", str(tmp_path / "nope"), "--out", "x")
    assert "not a folder" in refused("pack", str(llama / "config.json"), "--out", str(tmp_path / "o1"))
    assert f"--out {packed}: not empty" in refused("pack", str(llama), "--out", str(packed))
    assert "name 'llama_sentencepiece' is taken by" in refused("pack", str(llama), str(llama), "--out",
                                                               str(tmp_path / "o2"))
    empty = tmp_path / "odd"
    empty.mkdir()
    (empty / "notes.md").write_text("?")
    assert "cannot tell whether it is a model" in refused("pack", str(empty), "--out", str(tmp_path / "o3"))
    assert not (tmp_path / "o3").exists()  # nothing copied when refused
    assert f"{tmp_path / 'assets.json'}: missing" in refused("verify", str(tmp_path))
    (packed / "assets.json").write_text("{not json")
    assert f"{packed / 'assets.json'}: not JSON" in refused("verify", str(packed))
    assert "--name: given 2 times for 1 SRC" in refused("pack", str(llama), "--name", "a", "--name", "b",
                                                        "--out", str(tmp_path / "o4"))
    # --kind overrides what the files say
    assert assets(["pack", str(empty), "--kind", "dataset", "--out", str(tmp_path / "o5"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "o5" / "assets.json").read_text())["entries"][0]["kind"] == "dataset"


def test_locate_check_and_record(packed):
    entry = carry.locate(packed / "kobest_v1" / "boolq")
    assert entry is not None and entry.name == "kobest_v1" and carry.locate(packed / "kobest_v1").name == "kobest_v1"
    assert carry.locate(packed) is None and carry.locate(packed.parent) is None
    assert carry.check(entry) == []
    bundle = carry.load(packed)
    assert bundle.find("skt/kobest_v1").name == "kobest_v1" and bundle.find("other/tiny-llama").name == "tiny-llama"
    assert bundle.find("x/y") is None
    rec = entry.record()
    assert rec["assets_sha256"] == sha256(packed / "assets.json")
    assert (rec["bundle"], rec["entry"], rec["source_id"], rec["revision"], rec["license"]) == (
        str(packed), "kobest_v1", "skt/kobest_v1", DATA_COMMIT, "cc-by-sa-4.0")
    (packed / "kobest_v1" / "copa" / "test.jsonl").write_text("{}\n")
    (problem,) = carry.check(entry)
    assert problem.startswith(f"{packed / 'kobest_v1' / 'copa' / 'test.jsonl'}: changed (sha256 expected ")


# ---------------------------------------------------------------------------------------------------------------------
# The base stage imports a bundle entry: checked, recorded in base.json, the manifest and the papers
# ---------------------------------------------------------------------------------------------------------------------


def _cfg(path: Path):
    return OmegaConf.create({"base": {"path": str(path), "name": "tiny-llama", "license": "apache-2.0",
                                      "allow_pickle": False, "trust_remote_code": False,
                                      "allow_unknown_license": False}})


def _run_base(cfg, run: Path):
    stage_dir = run / "base"
    inputs = hash_entries(base_stage.external_inputs(cfg, "base"))  # what the pipeline records before run()
    Manifest(stage="base", inputs=inputs).save(stage_dir)
    return base_stage.run(StageContext(cfg=cfg, run_dir=run, stage_dir=stage_dir, upstream={}))


def test_base_import_from_a_bundle_entry_is_recorded_in_base_json_and_the_papers(packed, tmp_path):
    cfg = _cfg(packed / "tiny-llama")
    assert base_stage.check(cfg, "base") == []
    run = tmp_path / "run"
    result = _run_base(cfg, run)
    bundle_hash = sha256(packed / "assets.json")
    record = json.loads((run / "base" / "base.json").read_text())["bundle"]
    assert record == result.metrics["bundle"]  # base.json and the stage manifest's metrics
    assert (record["bundle"], record["entry"], record["assets_sha256"], record["source_id"], record["revision"],
            record["license"], record["verified"]) == (str(packed), "tiny-llama", bundle_hash, "kgov/tiny-llama",
                                                       COMMIT, "apache-2.0", True)
    # a model built on it: its papers name the bundle and its hash
    Manifest(stage="base", status="complete", outputs=[{"path": "base.json", "sha256": "x"}]).save(run / "base")
    (run / "sft" / "final").mkdir(parents=True)
    (run / "sft" / "final" / "model.safetensors").write_bytes(b"w")
    Manifest(stage="sft", status="running", inputs=[{"path": str(run / "base" / "base.json"), "sha256": "x",
                                                     "from_stage": "base"}]).save(run / "sft")
    facts = gather(run, "sft", run / "sft" / "final", config={})
    assert facts["base"]["bundle"]["assets_sha256"] == bundle_hash
    assert build_bom(facts)["model"]["base"]["bundle"]["entry"] == "tiny-llama"
    card = render_card(facts)
    assert f"entry `tiny-llama` of the bundle `{packed}`, bundle hash (sha256 of assets.json) `{bundle_hash}`" in card
    assert f"source `kgov/tiny-llama` at revision `{COMMIT}`" in card


def test_base_import_refuses_an_entry_that_differs_from_its_bundle(packed, tmp_path):
    entry = packed / "tiny-llama"
    cfg = _cfg(entry)
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # inside the last tensor's data: the safetensors header still agrees
    weights.write_bytes(bytes(data))
    assert base_stage.check(cfg, "base") == []  # sizes agree: only the hashes tell
    with pytest.raises(BaseImportError) as e:
        _run_base(cfg, tmp_path / "run")
    (line,) = e.value.problems
    assert line.startswith(f"base.path: {weights}: changed (sha256 expected ")
    assert f"entry 'tiny-llama' of the bundle {packed}" in line and "kgov-train assets verify" in line
    (entry / "notes.txt").write_text("x")
    (problem,) = base_stage.check(cfg, "base")  # the recipe check names a file the bundle does not list
    assert problem.startswith(f"base.path: {entry / 'notes.txt'}: extra file, not listed in {packed / 'assets.json'}")
