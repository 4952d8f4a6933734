"""Tokenizer stage: lossless sentencepiece, the exported fast tokenizer, special ids, chat template.

The stage runs through the real pipeline on a sealed data stage written here (Korean law
and bill texts from examples/ plus edge-case documents)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm
from tokenizers import Tokenizer

from data_prep.tokenizer import specials as S
from data_prep.tokenizer.build import BuildSettings, build_tokenizer
from data_prep.tokenizer.chat_template import ChatTemplateError, render
from data_prep.tokenizer.corpus import CorpusError
from data_prep.tokenizer.evaluate import PROBES
from data_prep.tokenizer.special_ids import read_special_tokens
from data_prep.tokenizer.train import TokenizerTrainError, split_long
from tests.helpers import REPO_ROOT
from kgov_train.pipeline import validate
from kgov_train.manifest import Manifest, hash_entries
from kgov_train.pipeline import run_chain
from tests.helpers import compose_cfg

SAMPLE = REPO_ROOT / "examples" / "data" / "ko-gov-sample"
TRICKY = PROBES + [
    " 앞 공백", "뒤 공백 ", "여러    칸   띄움", "\t들여쓰기\n\t\t두 번", "줄\n\n\n바꿈\r\n윈도우",
    "숫자 0123456789 ２０２４", "희귀 한자 龘靐齉 𪚥", "이모지 🇰🇷 🧑🏻‍💻 ❤️", "조합 ᄒᆞᆫ글", "\u3000전각공백\u3000",
    "코드 `x = {\"a\": [1, 2]}`; <div>", "<|user|>", "<|assistant|>\n",
]
EXTRA_DOCS = [
    ("edge-ws", "  제1조  (목적)\n\n\t이 법은 …\n   ① 항\n"),
    ("edge-hanja", "大韓民國憲法 第1條 ① 大韓民國은 民主共和國이다. 龘"),
    ("edge-emoji", "민원 접수 완료 ✅ 감사합니다 🙏 😀😀"),
    ("edge-special-text", "HTML 예시: </s> 와 <|user|> 는 문서 속 글자일 뿐이다. <s>"),
    ("edge-digits", "2024년 12월 31일 예산 1,234,567,890원, 전화 02-2100-0000"),
]


def corpus_docs() -> list[tuple[str, str]]:
    docs = [(p.stem, p.read_text(encoding="utf-8")) for p in sorted(SAMPLE.glob("*.txt"))]
    # the constitution split by chapter gives more, shorter documents for the split tests
    const = dict(docs).pop("kolaw_constitution")
    docs = [d for d in docs if d[0] != "kolaw_constitution"]
    docs += [(f"constitution-{i:02d}", part) for i, part in enumerate(const.split("\n제") ) if part.strip()]
    return docs + EXTRA_DOCS


def seal_corpus(run_dir: Path, docs: list[tuple[str, str]]) -> None:
    """A complete data stage as the real one leaves it: clean/*.jsonl(.gz) sealed in a manifest."""
    data = run_dir / "data"
    clean = data / "clean"
    clean.mkdir(parents=True)
    half = len(docs) // 2
    with gzip.open(clean / "00000.jsonl.gz", "wt", encoding="utf-8") as f:
        for i, t in docs[:half]:
            f.write(json.dumps({"id": i, "text": t, "metadata": {"source": "test"}}, ensure_ascii=False) + "\n")
    with open(clean / "00001.jsonl", "w", encoding="utf-8") as f:  # both formats, read in name order
        for i, t in docs[half:]:
            f.write(json.dumps({"id": i, "text": t, "metadata": {"source": "test"}}, ensure_ascii=False) + "\n")
    m = Manifest(stage="data", status="complete", outputs=hash_entries([clean], relative_to=data))
    m.save(data)


def build(clean: Path, out: Path, **settings) -> dict:
    """build_tokenizer's metrics, every document sampled (no data-stage figures)."""
    return build_tokenizer(clean, out, BuildSettings(**settings))[1]


def run_stages(run_dir: Path, *overrides: str):
    ov = ["recipe=smoke", f"run_dir={run_dir}", *overrides]
    cfg = compose_cfg(ov)
    validate(cfg)
    return run_chain(cfg, ov)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("tok") / "run"
    seal_corpus(run_dir, corpus_docs())
    run_stages(run_dir, "stages=[tokenizer]")
    return run_dir


@pytest.fixture(scope="module")
def tok_dir(run_dir) -> Path:
    return run_dir / "tokenizer"


@pytest.fixture(scope="module")
def sp(tok_dir):
    return spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))


@pytest.fixture(scope="module")
def auto(tok_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tok_dir))


def test_stage_outputs_and_metrics(run_dir, tok_dir):
    m = Manifest.load(tok_dir)
    assert m.status == "complete"
    assert sorted(o["path"] for o in m.outputs) == ["report.json", "report.md", "tokenizer.json", "tokenizer.model",
                                                    "tokenizer_config.json"]
    x = m.metrics
    assert x["vocab_size"] == 2000 and x["roundtrip_ok"] and x["fast_matches_spm"]
    assert x["training_sentences"] > 0 and x["train_seconds"] >= 0
    assert 1.2 < x["heldout_chars_per_token"] < 4 and 0 <= x["heldout_byte_fallback_rate"] < 0.05
    assert x["heldout_unk_rate"] == 0 and x["heldout_roundtrip_exact"] == 1.0
    assert x["chat_template_has_generation"] and x["chat_prompt_tokens_are_prefix"]


def test_special_token_ids(sp, tok_dir, auto):
    fast = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    for piece, i in S.expected_ids().items():
        assert sp.piece_to_id(piece) == i and fast.token_to_id(piece) == i, piece
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, 3)
    assert (auto.unk_token_id, auto.bos_token_id, auto.eos_token_id, auto.pad_token_id) == (0, 1, 2, 3)
    own = read_special_tokens(tok_dir)  # what the shards stage frames documents with: the same ids
    assert (own.id("unk"), own.bos_id, own.eos_id, own.pad_id) == (0, 1, 2, 3) and own.layout() == "<s> text </s>"
    assert len(auto) == sp.get_piece_size() == 2000
    for i, marker in enumerate(S.ROLE_MARKERS, start=4):
        assert auto.encode(f"앞{marker}뒤", add_special_tokens=False)[1] == i  # one token, even inside text
        assert sp.encode(f"앞{marker}뒤")[1] == i
    assert set(S.ROLE_MARKERS) <= set(auto.all_special_tokens)


@pytest.mark.parametrize("text", TRICKY)
def test_lossless_and_fast_equals_spm(sp, tok_dir, auto, text):
    ids = sp.encode(text)
    assert sp.decode(ids) == text
    assert Tokenizer.from_file(str(tok_dir / "tokenizer.json")).encode(text, add_special_tokens=False).ids == ids
    assert auto.encode(text, add_special_tokens=False) == ids
    assert auto.decode(ids) == text


def test_fast_equals_spm_on_every_corpus_document(sp, auto):
    texts = [t for _, t in corpus_docs() if not any(m in t for m in S.META)]
    assert len(texts) == len(corpus_docs()) - 1
    assert auto(texts, add_special_tokens=False)["input_ids"] == sp.encode(texts)


def test_literal_meta_token_text(sp, auto):
    # By design the one difference: sentencepiece reads "</s>" in text as characters, the
    # transformers tokenizer as eos (the chat template writes it); with split_special_tokens
    # it is text again, as the shards stage encodes documents.
    text = "문서 속 </s> 글자"
    assert S.EOS_ID not in sp.encode(text) and sp.decode(sp.encode(text)) == text
    assert S.EOS_ID in auto.encode(text, add_special_tokens=False)
    plain = auto.encode(text, add_special_tokens=False, split_special_tokens=True)
    assert plain == sp.encode(text) and auto.decode(plain) == text


def test_bos_prepended_for_plain_text_no_eos(auto):
    ids = auto("대한민국")["input_ids"]
    assert ids[0] == S.BOS_ID and ids[-1] != S.EOS_ID
    assert auto.decode(ids, skip_special_tokens=True) == "대한민국"


def test_chat_template_renders_and_masks_assistant_tokens(auto):
    chat = [{"role": "system", "content": "공손하게 답하라."}, {"role": "user", "content": "주민등록등본은?"},
            {"role": "assistant", "content": "정부24에서 발급합니다."}]
    text = auto.apply_chat_template(chat, tokenize=False)
    assert text == ("<s><|system|>공손하게 답하라.</s>\n<|user|>주민등록등본은?</s>\n"
                    "<|assistant|>정부24에서 발급합니다.</s>\n")
    out = auto.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    assert [ids[i] for i in range(len(ids)) if mask[i]][-1] == S.EOS_ID  # the answer's eos is trained on
    assert auto.decode([ids[i] for i in range(len(ids)) if mask[i]]) == "정부24에서 발급합니다.</s>"
    assert sum(mask) == len(auto.encode("정부24에서 발급합니다.", add_special_tokens=False)) + 1
    prompt = auto.apply_chat_template(chat[:2], add_generation_prompt=True, tokenize=True, return_dict=True)
    assert ids[:len(prompt["input_ids"])] == prompt["input_ids"]  # prompt tokens are a prefix
    assert ids.count(S.BOS_ID) == 1 and ids[0] == S.BOS_ID
    with pytest.raises(Exception, match="role must be system, user or assistant"):
        auto.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_loads_next_to_a_llama_config_and_survives_save_pretrained(tok_dir, auto, tmp_path):
    # A model folder (config.json model_type=llama) must not switch to LlamaTokenizer, which in
    # transformers 5 rebuilds the backend with a dummy-prefix Metaspace and is not lossless.
    from transformers import AutoTokenizer

    model_dir = tmp_path / "model"
    shutil.copytree(tok_dir, model_dir, ignore=shutil.ignore_patterns("manifest.json"))
    (model_dir / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 2000}))
    t = AutoTokenizer.from_pretrained(str(model_dir))
    assert type(t).__name__ == "TokenizersBackend"
    text = TRICKY[1]
    assert t.encode(text, add_special_tokens=False) == auto.encode(text, add_special_tokens=False)
    saved = tmp_path / "saved"
    t.save_pretrained(str(saved))
    again = AutoTokenizer.from_pretrained(str(saved))
    assert again.encode(text) == auto.encode(text) and again.decode(again.encode(text, add_special_tokens=False)) == text
    assert again.chat_template == auto.chat_template


def test_custom_chat_template_and_determinism(run_dir, tmp_path):
    custom = "{%- for m in messages -%}{{ m['content'] }}{%- generation -%}{{ eos_token }}{%- endgeneration -%}{%- endfor -%}"
    kw = dict(model_type="bpe", vocab_size=1000, character_coverage=0.999, input_sentence_size=150,  # sampled
              max_sentence_length=300, split_digits=True, num_threads=2, seed=7)
    a = build(run_dir / "data" / "clean", tmp_path / "a", chat_template=custom, **kw)
    build(run_dir / "data" / "clean", tmp_path / "b", chat_template=custom, **kw)
    assert a["training_sentences"] == 150 < a["training_sentences_fed"]
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "report.json", "report.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert json.loads((tmp_path / "a" / "tokenizer_config.json").read_text())["chat_template"] == custom
    assert a["chat_template"] == "custom"


def test_unigram_is_lossless_and_matches(run_dir, tmp_path):
    m = build(run_dir / "data" / "clean", tmp_path / "u", model_type="unigram", vocab_size=1500,
                        character_coverage=0.9995, input_sentence_size=200000, max_sentence_length=16384,
                        split_digits=True, num_threads=2, seed=1)
    assert m["roundtrip_ok"] and m["fast_matches_spm"]
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "u" / "tokenizer.model"))
    fast = Tokenizer.from_file(str(tmp_path / "u" / "tokenizer.json"))
    for text in TRICKY:
        ids = sp.encode(text)
        assert fast.encode(text, add_special_tokens=False).ids == ids and fast.decode(ids, skip_special_tokens=False) == text


def test_too_small_vocab_names_the_keys(run_dir, tmp_path):
    with pytest.raises(TokenizerTrainError, match=r"tokenizer.vocab_size=300.*tokenizer.character_coverage"):
        build(run_dir / "data" / "clean", tmp_path / "x", model_type="bpe", vocab_size=300,
                        character_coverage=1.0, input_sentence_size=1000, max_sentence_length=16384,
                        split_digits=True, num_threads=1, seed=0)


def test_long_lines_are_cut_not_dropped():
    line = "가나다 " * 1000
    parts = list(split_long(line, 100))
    assert "".join(parts) == line and all(len(p.encode()) <= 100 for p in parts)
    assert list(split_long("가" * 10, 4)) == ["가"] * 10


def test_unknown_role_in_template_check():
    with pytest.raises(ChatTemplateError, match="tokenizer.chat_template"):
        render("{{ raise_exception('no') }}", [])


def test_data_prep_never_imports_torch():
    code = ("import sys, data_prep.tokenizer.build, data_prep.shards.write, data_prep.shards.read, "
            "kgov_train.stages.tokenizer, kgov_train.stages.shards; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=120)


def test_bad_corpus_record_names_file_and_line(tmp_path):
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "00000.jsonl").write_text('{"id": "a", "text": "가나다 라마바"}\n{"id": "b", "txt": "x"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"00000.jsonl:2: a document record needs keys 'id' and 'text'"):
        build(clean, tmp_path / "tok", model_type="bpe", vocab_size=300, character_coverage=1.0,
                        input_sentence_size=100, max_sentence_length=16384, split_digits=True, num_threads=1, seed=0)


# ------------------------------------------------------------------ sample, report, options

def test_sample_shares_follow_the_source_weights_and_hold_out_by_id():
    from data_prep.tokenizer.sample import Sampler, source_rates

    text = "가나다라마바사 " * 10  # 80 characters a document
    docs = [(f"{src}-{i}", text, src) for src, n in (("big", 20000), ("small", 2000)) for i in range(n)]
    chars = {"big": 20000 * 80, "small": 2000 * 80}
    rates = source_rates(chars, {"big": 1.0, "small": 1.0}, sample_chars=200_000, heldout_fraction=0.05)
    assert rates == {"big": 100_000 / (chars["big"] * 0.95), "small": 100_000 / (chars["small"] * 0.95)}
    sampler = Sampler(rates, heldout_fraction=0.05, heldout_chars=10_000)
    n_train = sum(1 for _ in sampler.training_texts(docs))
    shares = {s: v["train_share"] for s, v in sampler.metrics()["sample_sources"].items()}
    assert abs(shares["big"] - 0.5) < 0.03 and abs(n_train * 80 - 200_000) < 200_000 * 0.05
    held = {d for docs_ in sampler.heldout.values() for d, _ in docs_}
    assert held and all(len(sampler.heldout[s]) * 80 <= 10_000 + 80 for s in sampler.heldout)
    # held out = a property of the id (its hash), whatever the order; those documents never train
    from data_prep.hashing import id_hash

    tagged = [(d, f"{d} {t}", src) for d, t, src in docs]
    again = Sampler(rates, 0.05, 10_000)
    trained = {t.split(" ", 1)[0] for t in again.training_texts(reversed(tagged))}
    assert len(trained) == n_train
    below = {d for d, _, _ in docs if id_hash(d) < 0.05 * 2**64}
    assert not trained & below and {d for v in again.heldout.values() for d, _ in v} <= below
    # a source smaller than its share is taken whole
    assert source_rates({"a": 10, "b": 10**9}, {"a": 1, "b": 1}, 1000)["a"] == 1.0


def test_report_scores_ours_and_the_baseline(run_dir, tok_dir, tmp_path):
    m = build(run_dir / "data" / "clean", tmp_path / "r", vocab_size=1000, input_sentence_size=200000,
              heldout_fraction=0.3, baseline=str(tok_dir))
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert set(report["evaluation"]) == {"ours", "baseline"} and report["scored_on"].startswith("held-out")
    ours, base = report["evaluation"]["ours"]["all"], report["evaluation"]["baseline"]["all"]
    assert ours["documents"] == base["documents"] > 0 and ours["roundtrip_exact"] == 1.0
    assert m["baseline_heldout_chars_per_token"] == base["chars_per_token"]
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| ours | all |" in md and "| baseline | test |" in md
    sample = report["sample_sources"]["test"]
    assert sample["heldout_documents"] == ours["documents"] and sample["rate"] == 1.0


def test_user_defined_symbols_stay_whole(run_dir, tmp_path):
    m = build(run_dir / "data" / "clean", tmp_path / "u", vocab_size=1000, input_sentence_size=200000,
              user_defined_symbols=("제1조", "[법령]"))
    fast = Tokenizer.from_file(str(tmp_path / "u" / "tokenizer.json"))
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "u" / "tokenizer.model"))
    assert fast.token_to_id("제1조") == sp.piece_to_id("제1조") == 7 and sp.piece_to_id("[법령]") == 8
    text = "[법령] 헌법 제1조 ① 대한민국은 민주공화국이다."
    ids = fast.encode(text, add_special_tokens=False).ids
    assert ids == sp.encode(text) and 7 in ids and 8 in ids and fast.decode(ids) == text
    assert m["roundtrip_ok"] and m["fast_matches_spm"]
    with pytest.raises(ValueError, match="tokenizer.user_defined_symbols"):
        build(run_dir / "data" / "clean", tmp_path / "bad", vocab_size=1000, user_defined_symbols=("<s>",))


def _straddles(tok: Tokenizer, texts: list[str]) -> float:
    """Share of morpheme boundaries inside words (kiwipiepy) that fall inside a token."""
    from data_prep.tokenizer.morphemes import DELIMITER, segment

    inside = total = 0
    for text, seg in zip(texts, segment(texts)):
        cuts, pos = set(), 0
        for part in seg.split(DELIMITER)[:-1]:
            pos += len(part)
            cuts.add(pos)
        spans = [o for o in tok.encode(text, add_special_tokens=False).offsets]
        total += len(cuts)
        inside += sum(any(a < c < b for a, b in spans) for c in cuts)
    return inside / max(total, 1)


def test_morpheme_aware_pieces_keep_to_morphemes_and_stay_lossless(run_dir, tmp_path):
    clean = run_dir / "data" / "clean"
    kw = dict(vocab_size=1500, input_sentence_size=200000)
    plain = build(clean, tmp_path / "plain", **kw)
    morph = build(clean, tmp_path / "morph", morpheme_aware=True, **kw)
    assert morph["morpheme_aware"] and morph["roundtrip_ok"] and morph["fast_matches_spm"]
    texts = [t for _, t in corpus_docs()][:6]
    a = _straddles(Tokenizer.from_file(str(tmp_path / "plain" / "tokenizer.json")), texts)
    b = _straddles(Tokenizer.from_file(str(tmp_path / "morph" / "tokenizer.json")), texts)
    assert b < a / 2, (a, b)
    # the price: shorter pieces
    assert morph["heldout_chars_per_token"] < plain["heldout_chars_per_token"]
