"""Bits per byte, and the eval stage on the routes that import a foundation model (cpt, finetune): the imported
base model is scored beside the trained stages, each with its own tokenizer, on held-out text and eval.text_files.

The base stage runs through the real pipeline on tests/foundation.py's tiny Llama-2-shaped folder; the "trained"
stages are that model (finetune) or a tiny model on the run's own tokenizer (cpt) with perturbed weights, written in
place of final/ in seconds, as tests/test_eval_stage.py does.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from kgov_train.manifest import Manifest
from tests.chains import run_chain
from tests.foundation import cached, gpt_neox, llama_sentencepiece
from tests.helpers import REPO_ROOT

TEXTS = REPO_ROOT / "examples" / "eval" / "texts"
EN, KO = TEXTS / "en_forgetting_sample.txt", TEXTS / "ko_heldout_sample.txt"
TEXT = "대한민국은 민주공화국이다. The library opens at nine.\n\n주권은 국민에게 있다."
BASE = ["base.name=tiny", "base.license=apache-2.0"]
FAST = ["eval.tasks=[]", "eval.max_new_tokens=2", "eval.max_bytes_per_set=1500", "eval.batch_size=4"]


@pytest.fixture(scope="module")
def foundation(tmp_path_factory) -> Path:
    return cached(llama_sentencepiece, tmp_path_factory.mktemp("foundation"))


def _load(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def _hand_bits(model, ids: list[int]) -> float:
    """-log2 p of ids[1:] given the tokens before them, summed by hand."""
    import torch

    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
    return float(-sum(logp[i, ids[i + 1]] for i in range(len(ids) - 1)) / math.log(2))


# ---------------------------------------------------------------------------------------------------------------------
# The metric
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,window", [(1, 4), (2, 2), (10, 2), (10, 3), (10, 10), (10, 11), (11, 4), (100, 8)])
def test_windows_predict_every_token_once(n, window):
    from kgov_train.evaluation.bits_per_byte import token_windows

    seq = list(range(n))
    ws = token_windows(seq, window)
    assert all(2 <= len(w) <= window for w in ws)
    assert [int(t) for w in ws for t in w[1:]] == seq[1:]  # each token after the first predicted exactly once
    assert all(ws[k][0] == ws[k - 1][-1] for k in range(1, len(ws)))  # one token of overlap


def test_bits_per_byte_is_the_hand_computed_sum(foundation):
    from kgov_train.evaluation.bits_per_byte import bits_per_byte, score

    model, tok = _load(foundation)
    ids = [tok.bos_token_id] + tok(TEXT, add_special_tokens=False)["input_ids"]
    n_bytes = len(TEXT.encode("utf-8"))
    assert ids[0] == 1 and len(ids) > 12
    whole = score(model, tok, [TEXT], window=512, batch_size=2)
    assert whole["bytes"] == n_bytes and whole["tokens"] == len(ids) - 1 and whole["windows"] == 1
    assert whole["bits_per_byte"] == pytest.approx(_hand_bits(model, ids) / n_bytes, rel=1e-5)
    # A document longer than the window: independent windows of 5 tokens overlapping by one
    by_hand = sum(_hand_bits(model, ids[i:i + 5]) for i in range(0, len(ids) - 1, 4))
    cut = score(model, tok, [TEXT], window=5, batch_size=3)
    assert cut["tokens"] == len(ids) - 1 and cut["windows"] == math.ceil((len(ids) - 1) / 4)
    assert cut["bits_per_byte"] == pytest.approx(by_hand / n_bytes, rel=1e-5)
    # Several documents: bits and bytes are summed, not the ratios averaged
    docs = TEXT.split("\n\n")
    both = bits_per_byte(model, tok, {"two": docs}, window=512, batch_size=2)["two"]
    hand = sum(_hand_bits(model, [tok.bos_token_id] + tok(d, add_special_tokens=False)["input_ids"]) for d in docs)
    assert both["bytes"] == sum(len(d.encode()) for d in docs) and both["documents"] == 2
    assert both["bits_per_byte"] == pytest.approx(hand / both["bytes"], rel=1e-5)


def test_the_denominator_is_the_texts_bytes_whatever_the_segmentation(foundation, tmp_path):
    """Two tokenizers cut the same text into different tokens; both are divided by the same UTF-8 bytes, and the
    bits are those of every token of that text, so the figures compare."""
    from kgov_train.evaluation.bits_per_byte import document_windows

    model, llama = _load(foundation)
    from transformers import AutoTokenizer

    neox = AutoTokenizer.from_pretrained(cached(gpt_neox, tmp_path, weights=False))
    lw, lb = document_windows(llama, TEXT, 1000)
    nw, nb = document_windows(neox, TEXT, 1000)
    assert lb == nb == len(TEXT.encode("utf-8"))
    assert len(lw[0]) != len(nw[0])  # other segmentations
    assert lw[0][0] == llama.bos_token_id and nw[0][0] == neox.bos_token_id  # the document starts at bos
    assert llama.decode(lw[0][1:].tolist()) == TEXT and neox.decode(nw[0][1:].tolist()) == TEXT  # all the text


def test_text_files_and_chat_records(tmp_path):
    from kgov_train.evaluation.texts import TextsError, cap_bytes, chat_record_text, read_text_file, text_file_problems

    en = read_text_file(EN)
    assert len(en) >= 10 and all("\n\n" not in d for d in en) and 3000 < len(EN.read_bytes()) < 8000
    assert len(read_text_file(KO)) >= 5
    (tmp_path / "a.jsonl").write_text('{"text": "하나"}\n\n{"text": "둘"}\n', encoding="utf-8")
    assert read_text_file(tmp_path / "a.jsonl") == ["하나", "둘"]
    (tmp_path / "b.jsonl").write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(TextsError, match=r"b.jsonl:1: a record needs a string 'text'"):
        read_text_file(tmp_path / "b.jsonl")
    assert cap_bytes(["가" * 10, "b", "c"], 30) == ["가" * 10]  # 30 bytes: whole documents, in order
    assert text_file_problems([str(EN), str(tmp_path / "x" / EN.name), str(tmp_path / "c.csv")]) == [
        f"eval.text_files: {tmp_path / 'x' / EN.name} does not exist",
        f"eval.text_files: {EN} and {tmp_path / 'x' / EN.name} have the same name 'en_forgetting_sample' (the set's "
        "name)", f"eval.text_files: {tmp_path / 'c.csv'} is not a .txt or .jsonl file"]
    sft = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "질문"},
                        {"role": "assistant", "content": "답 "}]}
    dpo = {"prompt": [{"role": "user", "content": "질문"}], "chosen": [{"role": "assistant", "content": "좋은 답"}],
           "rejected": [{"role": "assistant", "content": "나쁜 답"}]}
    assert chat_record_text(sft) == "s\n\n질문\n\n답" and chat_record_text(dpo) == "질문\n\n좋은 답"


# ---------------------------------------------------------------------------------------------------------------------
# The eval stage on the routes with a base stage
# ---------------------------------------------------------------------------------------------------------------------


def _perturbed(src: Path, dest: Path, seed: int, tokenizer_dir: Path | None = None) -> None:
    """A stand-in for a trained stage's final/: src's model (or, with tokenizer_dir, a tiny model on that tokenizer)
    with perturbed weights, and a complete manifest."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir or src)
    if tokenizer_dir is None:
        model = AutoModelForCausalLM.from_pretrained(src)
    else:
        model = AutoModelForCausalLM.from_config(LlamaConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=512, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(dest / "final")
    tok.save_pretrained(dest / "final")
    (dest / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 5.0 - s / 10}) + "\n"
                                                for s in range(1, 4)))
    Manifest(stage=dest.name, fingerprint="fake", status="complete").save(dest)


def _check_bpb(run_dir: Path, models: list[str], sets: set[str]) -> dict:
    m = json.loads((run_dir / "eval" / "manifest.json").read_text(encoding="utf-8"))
    assert m["status"] == "complete"
    rep = json.loads((run_dir / "eval" / "report.json").read_text(encoding="utf-8"))
    assert rep["stages"] == models and rep["base"] == "base"
    by_stage = m["metrics"]["bits_per_byte_by_stage"]
    assert list(by_stage) == models
    for model in models:
        assert set(by_stage[model]) == sets, model
        for name in sets:
            f = rep["bits_per_byte"][model][name]
            assert math.isfinite(f["bits_per_byte"]) and f["bits_per_byte"] > 0 and f["tokens"] > 0, (model, name)
            assert f["bytes"] == rep["text_sets"][name]["bytes"]  # the same text for every model
    assert set(m["metrics"]["bits_per_byte_vs_base"]) == sets
    md = (run_dir / "eval" / "report.md").read_text(encoding="utf-8")
    assert "## Bits per byte" in md and "| set | " + " | ".join(models) + " | change |" in md
    assert "bits_per_byte.png" in {o["path"] for o in m["outputs"]}
    return rep


@pytest.mark.usefixtures("no_network")
def test_finetune_route_scores_the_base_without_shards(foundation, tmp_path):
    run_dir = tmp_path / "run"
    common = ["recipe=smoke", f"run_dir={run_dir}", "route=finetune", "sft_stages=null", f"base.path={foundation}",
              *BASE]
    run_chain([*common, "stages=[base]"])
    _perturbed(foundation, run_dir / "sft", 1)
    _perturbed(run_dir / "sft" / "final", run_dir / "dpo", 2)
    run_chain([*common, "stages=[eval]", f"eval.text_files=['{EN}','{KO}']", *FAST])
    rep = _check_bpb(run_dir, ["base", "sft", "dpo"],
                     {"sft:validation", "dpo:validation", "en_forgetting_sample", "ko_heldout_sample"})
    assert rep["perplexity"] == {} and rep["route"] == "finetune"
    assert not (run_dir / "shards").exists()
    assert rep["models"]["base"] == str(foundation)
    assert {g["modes"]["base"] for g in rep["generations"]} == {"plain"}


@pytest.mark.usefixtures("no_network")
def test_cpt_route_scores_the_base_on_held_out_corpus_text(upstream_run, foundation, tmp_path):
    """The base (its own 1000-piece tokenizer) beside models on the run's tokenizer: bits per byte on the held-out
    documents of every source and on a text file; perplexity on the shards only for the models that read them."""
    from kgov_train.evaluation.texts import heldout_sets

    run_dir = tmp_path / "run"
    for name in ("data", "tokenizer", "shards"):
        shutil.copytree(upstream_run / name, run_dir / name)
    common = ["recipe=smoke", f"run_dir={run_dir}", "route=cpt", "sft_stages=null", f"base.path={foundation}", *BASE]
    run_chain([*common, "stages=[base]"])
    for seed, stage in enumerate(("pretrain", "sft", "dpo")):
        _perturbed(foundation, run_dir / stage, seed, tokenizer_dir=run_dir / "tokenizer")
    run_chain([*common, "stages=[eval]", "eval.stages=[pretrain]", f"eval.text_files=['{EN}']", *FAST])
    sources = json.loads((run_dir / "shards" / "index.json").read_text())["sources"]
    rep = _check_bpb(run_dir, ["base", "pretrain", "dpo"],
                     {*(f"heldout:{s}" for s in sources), "en_forgetting_sample"})
    assert set(rep["perplexity"]) == {"pretrain", "dpo"}  # the base's token ids are not the shards'
    # the held-out documents are exactly those the shards put in validation: as many, as many characters
    index = json.loads((run_dir / "shards" / "index.json").read_text())
    held = heldout_sets(run_dir / "shards", run_dir / "data" / "clean", 10 ** 12)
    for s in sources:
        val = index["splits"]["validation"]["sources"][s]
        assert len(held[f"heldout:{s}"]) == val["documents"] > 0
        assert sum(len(d) for d in held[f"heldout:{s}"]) == val["chars"]


def test_check_accepts_the_default_stages_on_every_route(foundation):
    from kgov_train.stages.eval import check
    from tests.helpers import compose_cfg

    for route in ("scratch", "cpt", "finetune"):
        cfg = compose_cfg(["recipe=smoke", f"route={route}", f"base.path={foundation}", *BASE])
        assert check(cfg) == [], route
    cfg = compose_cfg(["recipe=smoke", "route=finetune", "sft_stages=null", "eval.stages=[sft,base,nope]",
                       f"eval.text_files=['{EN}','/no/such.txt']"])
    assert check(cfg) == ["eval.stages: ['nope'] are not training stages of the run (['sft', 'dpo'])",
                          "eval.text_files: /no/such.txt does not exist"]


class _Oracle:
    """A "model" that puts all probability on the token that really comes next (it reads it from the window, a
    look-ahead no real model has), so every byte of the text is predicted with certainty: 0 bits whatever the
    tokenizer. shift=0 predicts the current token instead: the control that the scoring can see a wrong target."""

    def __init__(self, vocab: int, shift: int = 1):
        import torch

        self.vocab, self.shift = vocab, shift
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # score_windows reads the device from the parameters

    def parameters(self):
        return iter([self.anchor])

    def __call__(self, input_ids, attention_mask=None):
        import torch

        b, t = input_ids.shape
        logits = torch.full((b, t, self.vocab), -1e4)
        target = torch.roll(input_ids, -self.shift, dims=1) if self.shift else input_ids
        logits.scatter_(2, target.unsqueeze(-1), 1e4)
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize("window", [4, 1000])  # several overlapping windows per document, and one
def test_a_model_certain_of_every_byte_scores_zero_under_any_tokenization(foundation, tmp_path, window):
    from transformers import AutoTokenizer

    from kgov_train.evaluation.bits_per_byte import score

    docs = [TEXT, "둘째 문서: 제3조(정의) ① 이 법에서 사용하는 용어의 뜻은 다음과 같다."]
    for folder in (foundation, cached(gpt_neox, tmp_path, weights=False)):
        tok = AutoTokenizer.from_pretrained(folder)
        text_tokens = sum(len(tok(d, add_special_tokens=False)["input_ids"]) for d in docs)
        right = score(_Oracle(len(tok)), tok, docs, window=window, batch_size=3)
        assert right["bits"] == 0 and right["bits_per_byte"] == 0
        assert right["tokens"] == text_tokens and right["bytes"] == sum(len(d.encode()) for d in docs)
        wrong = score(_Oracle(len(tok), shift=0), tok, docs, window=window, batch_size=3)
        assert wrong["bits_per_byte"] > 100  # every token scored against the wrong target costs ~2e4 nats
