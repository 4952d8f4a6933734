"""eval.benchmarks: lm-eval's own Korean benchmark tasks on local copies of their datasets (tests/benchmark_copies.py
lays them out as the hub does), resolved before any model is loaded, run offline through the pipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kgov_train.evaluation import benchmarks as B
from tests import benchmark_copies as copies
from tests.chains import run_chain
from tests.helpers import compose_cfg
from tests.test_eval_stage import _fake_finals

FAMILIES = ["kobest", "kmmlu", "haerae", "click"]


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory) -> Path:
    return copies.build(tmp_path_factory.mktemp("benchmarks") / "datasets")


def test_names_belong_to_families():
    assert B.family_of("kmmlu") == "kmmlu" and B.family_of("kmmlu_hard_accounting") == "kmmlu"
    assert B.family_of("kobest_boolq") == "kobest" and B.family_of("kormedmcqa_doctor") == "kormedmcqa"
    with pytest.raises(B.BenchmarkError, match=r"eval.benchmarks: 'mmlu' is none of the Korean benchmarks"):
        B.family_of("mmlu")


def test_plan_resolves_every_benchmark_to_local_tasks(datasets_dir, tmp_path):
    plan, folders = B.plan(FAMILIES, datasets_dir, tmp_path)
    assert {f.name for f in folders} == {f"benchmark-{f}" for f in FAMILIES}
    leaves = {n: [leaf.task for leaf in plan.leaves[n]] for n in FAMILIES}
    assert sorted(leaves["kobest"]) == [f"kobest_{t}" for t in ("boolq", "copa", "hellaswag", "sentineg", "wic")]
    assert len(leaves["kmmlu"]) == len(copies.kmmlu_subjects()) == 45
    assert len(leaves["haerae"]) == 5 and len(leaves["click"]) == 11
    # KMMLU's categories are groups of lm-eval, weighted by size as lm-eval defines them
    assert {"kmmlu_stem", "kmmlu_humss", "kmmlu_other", "kmmlu_applied_science"} <= set(plan.groups)
    assert plan.groups["kmmlu"]["weight_by_size"] is True
    # every task reads the local copy: the rewritten task files name the folder, not the hub id
    assert set(plan.datasets) == set(copies.REPOS.values())
    assert all(Path(leaf.dataset_path).is_dir() for n in FAMILIES for leaf in plan.leaves[n])
    text = (tmp_path / "benchmark-kobest" / "kobest_boolq.yaml").read_text(encoding="utf-8")
    assert f"dataset_path: {(datasets_dir / copies.KOBEST).resolve()}\n" in text and "dataset_path: skt" not in text
    by_task = {leaf.task: leaf for leaf in plan.leaves["kmmlu"]}
    assert by_task["kmmlu_accounting"].dataset_name == "Accounting" and by_task["kmmlu_accounting"].split == "test"
    files = B.dataset_files(plan)
    assert any(p.name == "Accounting-test.csv" for p in files) and all(".cache" not in p.parts for p in files)


def test_a_missing_dataset_is_one_line_naming_benchmark_and_folder(datasets_dir, tmp_path):
    with pytest.raises(B.BenchmarkError) as e:
        B.plan(["kobest_boolq", "kmmlu_hard"], datasets_dir, tmp_path)  # KMMLU-HARD has no local copy
    lines = str(e.value).splitlines()
    assert lines == [f"eval.benchmarks: kmmlu_hard needs HAERAE-HUB/KMMLU-HARD in {datasets_dir}/HAERAE-HUB/KMMLU-HARD "
                     f"(not found under eval.datasets_dir={datasets_dir}; download it on a connected machine and "
                     "carry it in, see docs/air_gap.md)"]


def test_every_family_names_its_hub_datasets(tmp_path):
    # lm-eval spells some of them `dataset_path : id` (KorMedMCQA); each is found and asked for by its hub id
    for name, hub in (("kormedmcqa", "sean0042/KorMedMCQA"), ("kbl", "lbox/kbl")):
        with pytest.raises(B.BenchmarkError, match=f"eval.benchmarks: {name} needs {hub} in"):
            B.plan([name], tmp_path, tmp_path / "tasks")


def test_hub_cache_and_flat_layouts_are_found(tmp_path):
    cache = tmp_path / "datasets--skt--kobest_v1"
    (cache / "snapshots" / "abc123").mkdir(parents=True)
    (cache / "snapshots" / "old").mkdir()
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("abc123")
    assert B.local_folder(tmp_path, copies.KOBEST) == cache / "snapshots" / "abc123"
    (tmp_path / "KMMLU").mkdir()  # a bundle entry is named after the repo
    assert B.local_folder(tmp_path, copies.KMMLU) == tmp_path / "KMMLU"
    assert B.local_folder(tmp_path, copies.CLICK) is None


def test_recipe_check_names_the_key_before_any_work(datasets_dir, tmp_path):
    from kgov_train.stages.eval import check

    cfg = compose_cfg(["recipe=smoke", f"run_dir={tmp_path}", "eval.benchmarks=[kobest]"])
    assert any(e.startswith("eval.datasets_dir: None is not a folder") for e in check(cfg))
    cfg = compose_cfg(["recipe=smoke", f"run_dir={tmp_path}", "eval.benchmarks=[kobest,mmlu]",
                       f"eval.datasets_dir={datasets_dir}"])
    assert any("'mmlu' is none of the Korean benchmarks" in e for e in check(cfg))
    cfg = compose_cfg(["recipe=smoke", f"run_dir={tmp_path}", f"eval.benchmarks=[{','.join(FAMILIES)}]",
                       f"eval.datasets_dir={datasets_dir}"])
    assert check(cfg) == []


def test_chat_template_only_where_the_task_asks_for_it(datasets_dir, tmp_path):
    from kgov_train.stages.eval import chat_runs

    plan, _ = B.plan(["kobest", "kmmlu_direct_accounting"], datasets_dir, tmp_path)
    assert plan.generative("kmmlu_direct_accounting") and not plan.generative("kobest")
    assert chat_runs(plan, "auto", True) == {False: ["kobest"], True: ["kmmlu_direct_accounting"]}
    assert chat_runs(plan, "auto", False) == {False: ["kobest", "kmmlu_direct_accounting"]}  # pretrain, base
    assert chat_runs(plan, "always", True) == {True: ["kobest", "kmmlu_direct_accounting"]}
    assert chat_runs(plan, "never", True) == {False: ["kobest", "kmmlu_direct_accounting"]}


def test_a_copy_lm_eval_cannot_read_names_the_benchmark_and_folder(datasets_dir, tmp_path):
    from kgov_train.evaluation import harness
    from kgov_train.stages.eval import run_benchmarks
    from tests.foundation import cached, llama_sentencepiece

    bad = tmp_path / "datasets"
    shutil.copytree(datasets_dir / copies.KOBEST, bad / copies.KOBEST)
    (bad / copies.KOBEST / "boolq" / "test.jsonl").unlink()  # its README still lists it
    plan, folders = B.plan(["kobest_boolq"], bad, tmp_path / "tasks")
    model = cached(llama_sentencepiece, tmp_path / "models")
    with pytest.raises(B.BenchmarkError, match=r"eval.benchmarks: \['kobest_boolq'\] failed on .*: .*the local "
                                               r"copies read: .*skt/kobest_v1 \(are they the hub's files"):
        run_benchmarks(plan, model, harness.task_manager(folders), "auto", False, 2, 2, None, "cpu")


CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def test_benchmarks_on_the_smoke_chain_offline(upstream_run, datasets_dir, tmp_path, no_network):
    from transformers import AutoTokenizer

    from kgov_train import carry

    # the copies as they arrive in the closed network: a verified bundle (kgov-train assets pack)
    bundle = tmp_path / "bundle"
    carry.pack([carry.Spec(datasets_dir / repo, repo_id=repo) for repo in copies.REPOS.values()], bundle,
               progress=False)
    run_dir = tmp_path / "run"
    for name in ("data", "tokenizer", "shards"):
        shutil.copytree(upstream_run / name, run_dir / name)
    _fake_finals(run_dir)
    tok = AutoTokenizer.from_pretrained(run_dir / "dpo" / "final")
    tok.chat_template = CHAT  # the DPO model is a chat model: its generative tasks go through the template
    tok.save_pretrained(run_dir / "dpo" / "final")
    names = [*FAMILIES, "kmmlu_direct_accounting"]
    run_chain(["recipe=smoke", f"run_dir={run_dir}", "sft_stages=null", "stages=[eval]", "eval.max_new_tokens=2",
               "eval.tasks=[]", "eval.stages=[]", "eval.limit=2", f"eval.benchmarks=[{','.join(names)}]",
               f"eval.datasets_dir={bundle}", "eval.text_files=[]", "eval.max_tokens_per_source=256"])
    out = run_dir / "eval"
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert rep["stages"] == ["dpo"]
    for stage in rep["stages"]:
        k = rep["benchmarks"][stage]
        assert list(k) == names
        assert len(k["kmmlu"]["tasks"]) == 45 and set(k["kmmlu"]["groups"]) == {
            "kmmlu_stem", "kmmlu_humss", "kmmlu_other", "kmmlu_applied_science"}
        assert {"click_cul", "click_lang"} == set(k["click"]["groups"])
        for name in FAMILIES:
            b = k[name]
            assert 0.0 <= b["score"]["acc"] <= 1.0 and b["aggregation"].startswith("micro")
            assert all(r["n"] == min(2, r["n"]) and r["n"] >= 1 for r in b["tasks"].values()), name
            assert b["items"] == sum(r["n"] for r in b["tasks"].values())
            accs = [r["acc"] for r in b["tasks"].values()]
            assert b["macro"]["acc"] == pytest.approx(sum(accs) / len(accs), abs=1e-6)
            micro = sum(r["acc"] * r["n"] for r in b["tasks"].values()) / b["items"]
            assert b["score"]["acc"] == pytest.approx(micro, abs=1e-6), name  # lm-eval's weight_by_size
        assert "f1" in k["kobest"]["score"]  # KoBEST's own macro-F1 metric comes through
        assert not any(b["chat_template"] for n, b in k.items() if n != "kmmlu_direct_accounting")
    assert rep["benchmarks"]["dpo"]["kmmlu_direct_accounting"]["chat_template"] is True
    assert set(manifest["metrics"]["benchmarks_by_stage"]["dpo"]) == set(names)
    raw = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    assert set(raw["dpo"]) == {"plain", "chat"}
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Korean benchmarks" in md and "### kmmlu (dpo)" in md and "| kmmlu_stem |" in md
    # the local dataset files are inputs of the stage: their hashes are in its manifest
    inputs = {i["path"] for i in manifest["inputs"]}
    assert str((bundle / "KMMLU" / "data" / "Accounting-test.csv").resolve()) in inputs
    # each dataset's bundle entry was verified and is named, with the bundle hash, in the report and the cards
    sha = carry.load(bundle).sha256
    found = manifest["metrics"]["benchmark_datasets"]
    assert set(found) == set(copies.REPOS.values())
    assert all(d["bundle"]["assets_sha256"] == sha for d in found.values())
    assert found[copies.KMMLU]["bundle"]["entry"] == "KMMLU" and found[copies.KMMLU]["bundle"]["license"] == \
        "cc-by-nd-4.0"
    card = (out / "papers" / "dpo" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Benchmark datasets" in card and f"| {copies.KOBEST} |" in card and sha in card


def test_decontamination_against_the_benchmarks_reports_hits_per_benchmark(datasets_dir, tmp_path):
    from tests.helpers import REPO_ROOT

    corpus = tmp_path / "corpus"
    shutil.copytree(REPO_ROOT / "examples" / "data" / "ko-gov-sample", corpus)
    bill = sorted(corpus.glob("*.txt"))[3]
    text = bill.read_text(encoding="utf-8")
    item = copies.KOBEST_ROWS["boolq"][0]
    # a KoBEST item pasted into a real bill, re-spaced and re-punctuated as copies are
    planted = item["paragraph"].replace(" ", "  ").replace(".", " ·") + "\n" + item["question"].replace(" ", "")
    middle = len(text) // 2
    bill.write_text(text[:middle] + "\n" + planted + "\n" + text[middle:], encoding="utf-8")
    run_dir = tmp_path / "run"
    run_chain(["recipe=smoke", f"run_dir={run_dir}", "stages=[data]", f"data.inputs=[{corpus}/*.txt]",
               "data.decontam.enabled=true", "eval.benchmarks=[kobest,haerae,click]",
               f"eval.datasets_dir={datasets_dir}"])
    manifest = json.loads((run_dir / "data" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["metrics"]["decontam_hits_by_benchmark"] == {"kobest": 1, "haerae": 0, "click": 0}
    assert manifest["metrics"]["rejected_by_reason"]["contaminated"] == 1
    roles = {i.get("benchmark") for i in manifest["inputs"] if i.get("role") == "decontamination"}
    assert roles == {copies.KOBEST, copies.HAERAE, copies.CLICK}  # hashed as inputs, kept apart from the corpus
    outputs = {o["path"] for o in manifest["outputs"]}
    assert {"benchmarks/kobest.jsonl", "benchmarks/haerae.jsonl", "benchmarks/click.jsonl"} <= outputs
    items = [json.loads(x) for x in (run_dir / "data" / "benchmarks" / "click.jsonl").read_text().splitlines()]
    assert len(items) == sum(len(ids) for _, _, ids in copies.CLICK_FILES)  # one file read once, not per category
    import gzip
    rejected = [json.loads(x) for f in (run_dir / "data" / "rejected").rglob("*.jsonl.gz")
                for x in gzip.open(f, "rt", encoding="utf-8")]
    hit = [r for r in rejected if "contaminated" in json.dumps(r, ensure_ascii=False)]
    assert len(hit) == 1 and "kobest.jsonl" in json.dumps(hit[0], ensure_ascii=False)
    # data.decontam.benchmarks narrows (or widens) the list eval.benchmarks gives
    from kgov_train.stages.data import decontam_benchmarks
    cfg = compose_cfg(["recipe=smoke", "data.decontam.enabled=true", "eval.benchmarks=[kobest]",
                       "data.decontam.benchmarks=[haerae]"])
    assert decontam_benchmarks(cfg) == ["haerae"]
    assert decontam_benchmarks(compose_cfg(["recipe=smoke", "eval.benchmarks=[kobest]"])) == []  # disabled


def test_benchmarks_read_from_a_verified_bundle(datasets_dir, tmp_path):
    from kgov_train import carry

    bundle = tmp_path / "bundle"
    carry.pack([carry.Spec(datasets_dir / copies.KOBEST, repo_id=copies.KOBEST),
                carry.Spec(datasets_dir / copies.HAERAE, repo_id=copies.HAERAE)], bundle, progress=False)
    plan, _ = B.plan(["kobest", "haerae"], bundle, tmp_path / "tasks")
    assert plan.datasets[copies.KOBEST] == (bundle / "kobest_v1").resolve()
    found = B.provenance(plan)
    sha = carry.load(bundle).sha256
    assert found[copies.KOBEST]["bundle"]["assets_sha256"] == sha == found[copies.HAERAE]["bundle"]["assets_sha256"]
    assert found[copies.KOBEST]["bundle"]["source_id"] == copies.KOBEST
    assert found[copies.KOBEST]["bundle"]["license"] == "cc-by-sa-4.0"
    # the hashes the pipeline took of the stage's inputs are used, not taken again (a wrong one shows)
    victim = bundle / "kobest_v1" / "boolq" / "test.jsonl"
    wrong = {str(victim.resolve()): "0" * 64}
    with pytest.raises(B.BenchmarkError, match=r"boolq/test.jsonl: changed \(sha256 expected .*, found 0000"):
        B.provenance(plan, wrong)
    # a byte changed after the bundle was verified stops the eval stage before any model, naming the file
    victim = bundle / "kobest_v1" / "boolq" / "test.jsonl"
    data = bytearray(victim.read_bytes())
    data[10] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(B.BenchmarkError, match=r"skt/kobest_v1 in bundle .* differs from its assets.json: .*"
                                               r"boolq/test.jsonl"):
        B.provenance(plan)
