"""Extending an English-centric tokenizer with Korean pieces (data_prep.tokenizer.extend), and the init of
the new embedding rows (kgov_train.train.model). The base tokenizers are trained here, offline, on stdlib
docstrings: Llama-2 style (Metaspace, byte fallback), Llama-3 style (byte-level, split regex,
ignore_merges, special tokens after the vocabulary) and GPT-2 style (byte-level)."""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import random
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from data_prep.tokenizer.extend import (
    BYTE_LEVEL_BPE, PROBES, SENTENCEPIECE_BPE, TokenizerExtendError, _Alphabet, _kind, extend_tokenizer,
    forces_syllable, is_syllable, learn_pieces,
)
from tests.helpers import REPO_ROOT

DATA = REPO_ROOT / "examples" / "data"
KINDS = ("llama2", "llama3")  # GPT-2 style: test_deterministic_and_reports_an_unreachable_target
BASE_VOCAB, ADD = 1500, 800
TRAIN_MODULES = ("collections", "json", "os", "re", "string", "textwrap", "argparse", "typing", "functools",
                 "itertools", "pathlib", "subprocess", "logging", "shutil", "random", "datetime", "csv", "heapq")
UNSEEN_MODULES = ("email.message", "http.client", "urllib.parse", "fractions")
UNSEEN_CODE = [
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)  # shape (3, 4)\n",
    "    if (a && !b) { return -1; } else if (c >= 0x7f) { throw new Error(`bad ${c}`); }",
    "2024-01-15 10:30:00,123 INFO [main] Processed 1,234,567 rows in 98.76s (12.5k rows/s)",
    "\t\t\n   \n\r\n  trailing   \t", "ID: A-00042/B; price=$19.99; qty=3; total=59.97",
]
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def docstrings(module_names) -> list[str]:
    out = []
    for name in module_names:
        mod = importlib.import_module(name)
        out.append(inspect.getdoc(mod) or "")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # typing.io and friends, read for their docstrings
            out += [inspect.getdoc(getattr(mod, a, None)) or "" for a in sorted(dir(mod)) if not a.startswith("_")]
    return [d for d in out if d]


def korean_texts() -> list[str]:
    docs = [p.read_text(encoding="utf-8") for p in sorted((DATA / "ko-gov-sample").glob("*.txt"))]
    with open(DATA / "ko-chatbot" / "ChatbotData.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return docs + [f"{r['Q']}\n{r['A']}" for r in rows[::4]]  # every fourth row keeps the file fast


def _save(tok: Tokenizer, out: Path, config: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (out / "tokenizer.model").write_text("stands for the slow tokenizer file that must not be copied")
    return out


def llama2_style(texts: list[str], out: Path) -> Path:
    """Like Llama-2's tokenizer.json: <unk> <s> </s>, 256 byte pieces, then BPE pieces; Metaspace, byte fallback."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)  # words, as spm
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=BASE_VOCAB - 259, limit_alphabet=200,
                                                       show_progress=False))
    data = json.loads(tok.to_str())
    head = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    vocab = {t: i for i, t in enumerate(head)}
    for t, _ in sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(t, len(vocab))
    data["model"]["vocab"] = vocab
    data["added_tokens"] = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for i, t in enumerate(head[:3])]
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    tok = Tokenizer.from_str(json.dumps(data))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return _save(tok, out, {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
                            "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False, "legacy": False})


def byte_level_style(texts: list[str], out: Path, llama3: bool) -> Path:
    tok = Tokenizer(models.BPE(ignore_merges=llama3))
    if llama3:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=BASE_VOCAB - 2, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
    tok.add_special_tokens([AddedToken(bos, special=True), AddedToken(eos, special=True)])  # after the vocab
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, tok.token_to_id(bos))])
    return _save(tok, out, {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos})


@pytest.fixture(scope="module")
def english() -> list[str]:
    return docstrings(TRAIN_MODULES)


@pytest.fixture(scope="module")
def unseen_english() -> list[str]:
    return docstrings(UNSEEN_MODULES) + UNSEEN_CODE


@pytest.fixture(scope="module")
def korean() -> list[str]:
    return korean_texts()


@pytest.fixture(scope="module")
def bases(tmp_path_factory, english) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bases")
    return {"llama2": llama2_style(english, root / "llama2"),
            "llama3": byte_level_style(english, root / "llama3", llama3=True),
            "gpt2": byte_level_style(english, root / "gpt2", llama3=False)}


@pytest.fixture(scope="module")
def extended(tmp_path_factory, bases, korean) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("extended")
    return {k: (root / k, extend_tokenizer(bases[k], korean, root / k, target_vocab_size=BASE_VOCAB + ADD))
            for k in KINDS}


def _pair(bases, extended, kind) -> tuple[Tokenizer, Tokenizer, Path, dict]:
    out, metrics = extended[kind]
    return (Tokenizer.from_file(str(bases[kind] / "tokenizer.json")), Tokenizer.from_file(str(out / "tokenizer.json")),
            out, metrics)


def _ids(tok: Tokenizer, texts: list[str], special: bool) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=special)]


@pytest.mark.parametrize("kind", KINDS)
def test_base_ids_and_text_without_hangul_unchanged(bases, extended, kind, english, unseen_english):
    base, ext, _, m = _pair(bases, extended, kind)
    ext_vocab = ext.get_vocab(with_added_tokens=True)
    assert all(ext_vocab.get(t) == i for t, i in base.get_vocab(with_added_tokens=True).items())
    rng = random.Random(0)  # strings of everything but syllables, incl. bytes shared with them (Yi, jamo)
    alphabet = "ab Z09 \n\t.,(){}<>_-▁éßж中日ꀀꁀ\ud7b0\ud7fbㄱㅏᄀ\u1161ｱﾡ😀" + "\u00a0\u3000"
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    texts = PROBES + unseen_english + english[:50] + fuzz
    for special in (False, True):
        assert _ids(base, texts, special) == _ids(ext, texts, special)
    assert m["base_ids_kept"] and m["english_ids_unchanged"] and m["non_hangul_lines_unchanged"]


@pytest.mark.parametrize("kind", KINDS)
def test_korean_compresses_better_and_round_trips(bases, extended, kind, korean):
    base, ext, _, m = _pair(bases, extended, kind)
    assert m["target_reached"] and m["vocab_size"] == BASE_VOCAB + ADD and m["tokens_added"] == ADD
    assert m["chars_per_token_extended"] > 2.5 * m["chars_per_token_base"], m
    assert "held-out" in m["measured_on"]
    if kind == "llama2":
        assert 0 < m["syllables_added"] < ADD  # syllables and merges both win places
    texts = korean[::5] + ["한글과 English가 섞인 문장 123개, 그리고 ㅋㅋ 😀", " 앞뒤 공백 ", "힣힢 ힰ"]
    base_back = base.decode_batch(_ids(base, texts, False), skip_special_tokens=False)
    ext_back = ext.decode_batch(_ids(ext, texts, False), skip_special_tokens=False)
    lossless = [i for i, (t, b) in enumerate(zip(texts, base_back)) if b == t]
    assert [ext_back[i] for i in lossless] == [texts[i] for i in lossless]
    assert m["roundtrip_exact"] and m["roundtrip_failures"] == 0
    assert m["texts_extended_ids_expand_to_base_ids"] == m["texts"]


@pytest.mark.parametrize("kind", KINDS)
def test_auto_tokenizer_loads_offline_with_the_same_ids(bases, extended, kind, korean, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    _, ext, out, m = _pair(bases, extended, kind)
    assert not (out / "tokenizer.model").exists()
    auto = AutoTokenizer.from_pretrained(str(out))
    assert type(auto).__name__ == "TokenizersBackend" and len(auto) == m["vocab_size"]
    texts = korean[:300] + PROBES
    for special in (False, True):
        assert auto(texts, add_special_tokens=special)["input_ids"] == _ids(ext, texts, special)


@pytest.mark.parametrize("kind", KINDS)
def test_extension_json_lists_each_new_token_with_its_base_pieces(bases, extended, kind):
    base, ext, out, m = _pair(bases, extended, kind)
    info = json.loads((out / "extension.json").read_text(encoding="utf-8"))
    assert info["base_vocab_size"] == BASE_VOCAB and info["vocab_size"] == BASE_VOCAB + ADD
    assert info["kind"] == (SENTENCEPIECE_BPE if kind == "llama2" else BYTE_LEVEL_BPE)
    assert [a["id"] for a in info["added"]] == list(range(BASE_VOCAB, BASE_VOCAB + ADD))
    base_vocab = base.get_vocab(with_added_tokens=True)
    for a in info["added"]:
        assert ext.id_to_token(a["id"]) == a["token"] and a["token"] not in base_vocab
        assert a["base_ids"] and all(i < BASE_VOCAB for i in a["base_ids"])
        assert base.decode(a["base_ids"], skip_special_tokens=False) == ext.decode([a["id"]], skip_special_tokens=False)
        decoded = ext.decode([a["id"]], skip_special_tokens=False)
        assert a["text"] == decoded or (kind == "llama2" and a["text"] == " " + decoded)  # Strip decoder
        assert forces_syllable(_Alphabet(info["kind"]).to_bytes(a["token"]))  # only fires on Hangul text
    assert m["added_without_base_ids"] == 0


def test_deterministic_and_reports_an_unreachable_target(bases, korean, tmp_path, unseen_english):
    texts = korean[11:811]  # chatbot rows
    a = extend_tokenizer(bases["gpt2"], texts, tmp_path / "a", target_vocab_size=BASE_VOCAB + 200)
    b = extend_tokenizer(bases["gpt2"], texts, tmp_path / "b", target_vocab_size=BASE_VOCAB + 200)
    assert a == b and a["target_reached"] and a["roundtrip_exact"] and a["chars_per_token_extended"] > 2 * a[
        "chars_per_token_base"]
    base, ext = (Tokenizer.from_file(str(d / "tokenizer.json")) for d in (bases["gpt2"], tmp_path / "a"))
    assert a["base_ids_kept"] and _ids(base, unseen_english, True) == _ids(ext, unseen_english, True)
    for name in ("tokenizer.json", "tokenizer_config.json", "extension.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    huge = extend_tokenizer(bases["llama2"], korean[:3], tmp_path / "c", target_vocab_size=BASE_VOCAB + 100_000)
    assert not huge["target_reached"] and huge["vocab_size"] < BASE_VOCAB + 100_000
    assert "no admissible Hangul" in huge["stop_reason"]
    assert huge["measured_on"].startswith("all 3 texts")


def test_bad_inputs_give_clear_errors(bases, tmp_path):
    with pytest.raises(TokenizerExtendError, match="tokenizer.json: not found"):
        extend_tokenizer(tmp_path / "nothing", ["가"], tmp_path / "o", target_vocab_size=10)
    with pytest.raises(TokenizerExtendError, match="must exceed the base's 1500 ids"):
        extend_tokenizer(bases["gpt2"], ["가나"], tmp_path / "o", target_vocab_size=BASE_VOCAB)
    for name, model in [("unigram", models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0, False)),
                        ("wordpiece", models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))]:
        d = tmp_path / name
        d.mkdir()
        Tokenizer(model).save(str(d / "tokenizer.json"))
        with pytest.raises(TokenizerExtendError, match="sentencepiece-style .* or byte-level"):
            extend_tokenizer(d, ["가나"], tmp_path / "o", target_vocab_size=10_000)
    plain = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")]))
    (tmp_path / "plain").mkdir()
    plain.save(str(tmp_path / "plain" / "tokenizer.json"))
    with pytest.raises(TokenizerExtendError, match="neither ByteLevel nor"):
        extend_tokenizer(tmp_path / "plain", ["가나"], tmp_path / "o", target_vocab_size=10)
    # the project's own export (Replace(" ", "▁") normalizer, no pre-tokenizer) is sentencepiece-style
    plain.normalizer = normalizers.Replace(" ", "▁")
    assert _kind(json.loads(plain.to_str()), tmp_path) == SENTENCEPIECE_BPE


def test_extend_module_imports_neither_torch_nor_transformers():
    code = ("import sys, data_prep.tokenizer.extend; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)


def test_byte_rule_admits_only_bytes_that_force_a_syllable():
    for cp in range(0x800, 0x10000):  # lead bytes EA-ED start 3-byte characters; other lengths never match
        if 0xD800 <= cp <= 0xDFFF:
            continue
        raw = chr(cp).encode("utf-8")
        forced = [forces_syllable(raw[:k]) for k in range(1, len(raw) + 1)]
        if any(forced):  # no prefix of a character other than a syllable forces one
            assert is_syllable(chr(cp)), hex(cp)
        if is_syllable(chr(cp)):
            assert forced[-1] and (forced[1] or cp >= 0xD780), hex(cp)  # 2 bytes are enough but for 힀-힣
    assert not forces_syllable("ힰ".encode()[:2])  # ED 9E: also Hangul Jamo Extended-B


def _naive_bpe(chunks: Counter, vocab: set, alpha, budget: int, min_frequency: int) -> list:
    words, vocab, steps = {tuple(w): n for w, n in chunks.items()}, set(vocab), []
    while len(steps) < budget:
        stats: Counter = Counter()
        for w, n in words.items():
            for p in zip(w, w[1:]):
                if alpha.admissible(p[0] + p[1]) and p[0] + p[1] not in vocab:
                    stats[p] += n
        if not stats:
            break
        (a, b), n = min(stats.items(), key=lambda kv: (-kv[1], kv[0]))
        if n < min_frequency:
            break
        steps.append((a, b))
        vocab.add(a + b)
        merged: Counter = Counter()
        for w, c in words.items():
            out, j = [], 0
            while j < len(w):
                if j + 1 < len(w) and (w[j], w[j + 1]) == (a, b):
                    out.append(a + b)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            merged[tuple(out)] += c
        words = merged
    return steps


def test_incremental_learner_equals_naive_bpe(korean):
    alpha = _Alphabet(SENTENCEPIECE_BPE)
    chunks: Counter = Counter()
    for text in korean[11:311]:  # chatbot rows
        for word in text.replace("\n", " ").split(" "):
            if word and all(is_syllable(c) for c in word):
                chunks[("▁",) + tuple(word)] += 1
    chunks[tuple("가가가가가")] += 3  # overlapping occurrences
    vocab = {"▁"} | {c for w in chunks for c in w}
    fast, _ = learn_pieces(chunks, vocab, alpha, 100, 2)
    assert fast == _naive_bpe(chunks, vocab, alpha, 100, 2) and len(fast) == 100


def _tiny_llama(path: Path, vocab_size: int, tied: bool) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=tied)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


@pytest.mark.parametrize("kind,tied", [("llama3", False), ("llama2", True)])
def test_new_embedding_rows_are_the_mean_of_their_base_pieces(bases, extended, kind, tied, tmp_path):
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kgov_train.train.model import ModelInitError, build_pretrain_model

    out, _ = extended[kind]
    ckpt = _tiny_llama(tmp_path / "ckpt", BASE_VOCAB, tied)
    old = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    cfg = OmegaConf.create({"model": {"init_from": str(ckpt), "attn_implementation": "eager",
                                      "resize_embeddings": True}})
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model, info = build_pretrain_model(cfg, tokenizer, out)
    assert info["embedding_init"] == "extension_mean_of_base_pieces" and info["embedding_rows_initialised"] == ADD
    assert info["vocab_size"] == BASE_VOCAB + ADD
    pairs = [(model.get_input_embeddings().weight, old.get_input_embeddings().weight)]
    if not tied:
        pairs.append((model.get_output_embeddings().weight, old.get_output_embeddings().weight))
    else:
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    added = json.loads((out / "extension.json").read_text(encoding="utf-8"))["added"]
    for new, before in pairs:
        assert torch.equal(new[:BASE_VOCAB], before)
        for a in added:
            torch.testing.assert_close(new[a["id"]], before[a["base_ids"]].mean(dim=0))

    # a checkpoint of another vocabulary size: the extension is not for it
    other = _tiny_llama(tmp_path / "other", BASE_VOCAB - 1, tied)
    cfg.model.init_from = str(other)
    with pytest.raises(ModelInitError, match=r"extension\.json extends a tokenizer of 1500 ids but .*other/config"):
        build_pretrain_model(cfg, tokenizer, out)


def test_tokenizer_stage_extends_a_base_and_reports_both(bases, tmp_path):
    """build_tokenizer with extend_from: the stage's path, on a data/clean-style corpus."""
    import gzip

    from data_prep.tokenizer.build import BuildSettings, build_tokenizer

    clean = tmp_path / "clean"
    clean.mkdir()
    with gzip.open(clean / "000_00000.jsonl.gz", "wt", encoding="utf-8") as f:
        for i, t in enumerate(korean_texts()):
            f.write(json.dumps({"id": f"d{i}", "text": t, "metadata": {"source": "ko"}}, ensure_ascii=False) + "\n")
    files, m = build_tokenizer(clean, tmp_path / "tok", BuildSettings(
        vocab_size=BASE_VOCAB + 300, extend_from=str(bases["llama2"]), heldout_fraction=0.1))
    assert files == ["tokenizer.json", "tokenizer_config.json", "extension.json", "report.json", "report.md"]
    assert not (tmp_path / "tok" / "tokenizer.model").exists()
    assert m["vocab_size"] == BASE_VOCAB + 300 and m["english_ids_unchanged"] and m["model_type"].startswith("extended")
    report = json.loads((tmp_path / "tok" / "report.json").read_text())
    ours, base = report["evaluation"]["ours"]["all"], report["evaluation"]["base"]["all"]
    assert ours["documents"] == base["documents"] > 0  # the same held-out documents, never learned from
    assert ours["chars_per_token"] > 1.5 * base["chars_per_token"] and ours["roundtrip_exact"] == base["roundtrip_exact"]
    assert m["base_heldout_chars_per_token"] == base["chars_per_token"]
