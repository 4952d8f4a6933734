"""Starting from an existing foundation model: tokenizer folders shaped like Llama-2 (sentencepiece, no pad), Qwen2
(byte-level, no bos, eos = pad after the learned pieces) and Polyglot-ko (GPT-NeoX, bos = eos = id 0), built locally
by tests/foundation.py. The shards stage frames documents with each tokenizer's own special tokens and records them;
pretraining accepts a tokenizer without pad; extend_from keeps every base id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data_prep.shards import read as R
from data_prep.shards.write import ShardsWriteError, write_shards
from data_prep.tokenizer.extend import PROBES, extend_tokenizer
from data_prep.tokenizer.special_ids import SpecialTokensError, read_special_tokens
from tests import foundation as F
from tests.chains import manifest, metrics_rows, run_chain
from tests.test_shards import write_clean

SHAPES = ("llama", "qwen2", "gpt_neox")
# (bos, eos, pad, unk) as transformers resolves them; qwen2's eos/pad is the first id after the learned pieces
EXPECTED = {"llama": ("<s>", "</s>", None, "<unk>"), "qwen2": (None, F.ENDOFTEXT, F.ENDOFTEXT, None),
            "gpt_neox": (F.ENDOFTEXT, F.ENDOFTEXT, None, F.ENDOFTEXT)}
LITERAL = "문서 속 글자: <s> </s> <|endoftext|> <|im_end|> 는 제어 토큰이 아니다."
KOREAN = [p.read_text(encoding="utf-8") for p in sorted((F.REPO_ROOT / "examples/data/ko-gov-sample").glob("*.txt"))]


@pytest.fixture(scope="session")
def foundation_root(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "foundation"  # shared with other modules that use tests.foundation


@pytest.fixture(scope="session")
def models(foundation_root) -> dict[str, Path]:
    return {k: F.cached(b, foundation_root) for k, b in F.BUILDERS.items()}


def _docs() -> list[tuple[str, str, str]]:
    """(id, text, source): Korean bills, English prose, and literal special-token text."""
    ko = [t[:3000] for t in KOREAN]
    en = [(F.REPO_ROOT / "README.md").read_text(encoding="utf-8")[:3000]]
    return [(f"doc-{i}", t, "ko" if i < len(ko) else "en") for i, t in enumerate(ko + en + [LITERAL])]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    clean = tmp_path_factory.mktemp("foundation_clean") / "clean"
    write_clean(clean, _docs(), files=2)
    return clean


@pytest.mark.parametrize("shape", SHAPES)
def test_fixtures_load_with_stock_transformers_and_have_the_real_special_ids(models, shape):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = models[shape]
    tok, config = AutoTokenizer.from_pretrained(folder), AutoConfig.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert (folder / "model.safetensors").is_file() and config.model_type == shape
    assert config.vocab_size == len(tok) == model.get_input_embeddings().weight.shape[0]
    bos, eos, pad, unk = EXPECTED[shape]
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (bos, eos, pad, unk)
    own = read_special_tokens(folder)  # the shards stage's reader resolves them as transformers does
    assert (own.bos_id, own.eos_id, own.pad_id, own.id("unk")) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id)
    ids = tok("Hello 대한민국 헌법")["input_ids"]
    if shape == "llama":  # <unk> <s> </s>, then the 256 byte pieces; bos prepended, byte fallback, no template
        assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
        assert tok.convert_tokens_to_ids(["<0x00>", "<0xFF>"]) == [3, 258] and ids[0] == 1
        assert (folder / "tokenizer.model").is_file() and not tok.chat_template
        assert json.loads((folder / "tokenizer.json").read_text())["model"]["byte_fallback"] is True
    elif shape == "qwen2":  # no bos; <|endoftext|> <|im_start|> <|im_end|> right after the learned pieces
        learned = len(json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"])
        assert tok.eos_token_id == tok.pad_token_id == learned and len(tok) == learned + 3
        assert tok.convert_tokens_to_ids([F.IM_START, F.IM_END]) == [learned + 1, learned + 2]
        assert ids[0] != tok.eos_token_id and tok.decode(ids) == "Hello 대한민국 헌법"
        chat = tok.apply_chat_template([{"role": "user", "content": "안녕"}], tokenize=False,
                                       add_generation_prompt=True)
        assert chat.endswith("<|im_start|>user\n안녕<|im_end|>\n<|im_start|>assistant\n")
    else:  # Polyglot-ko: <|endoftext|> is id 0, bos and eos; nothing is prepended
        assert tok.bos_token_id == tok.eos_token_id == 0 and ids[0] != 0
        assert len(tok) == 1003 and tok.convert_tokens_to_ids(list(F.POLYGLOT_PII)) == [1000, 1001, 1002]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), config.vocab_size)


@pytest.mark.parametrize("shape", SHAPES)
def test_shards_frame_documents_with_the_tokenizers_own_special_tokens(models, clean, tmp_path, shape):
    from transformers import AutoTokenizer

    from kgov_train.train.data import check_shards

    folder, out = models[shape], tmp_path / "shards"
    tok = AutoTokenizer.from_pretrained(folder)
    metrics = write_shards(clean, folder, out, validation_fraction=0.0, min_validation_docs=0,
                           max_tokens_per_file=100_000, batch_size=2, workers=2)
    index = R.load_index(out)
    assert (index["bos_token_id"], index["eos_token_id"], index["pad_token_id"]) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    assert index["vocab_size"] == len(tok)
    with_bos = shape == "llama"  # Qwen2 has no bos; GPT-NeoX's bos is its eos: the previous document's eos
    assert index["document_starts_with_bos"] is with_bos
    assert index["document_layout"] == {"llama": "<s> text </s>", "qwen2": "text <|endoftext|>",
                                        "gpt_neox": "text <|endoftext|>"}[shape]
    docs = {i: t for i, t, _ in _docs()}
    got = list(R.iter_documents(out, "train"))
    assert len(got) == len(docs)
    specials = {tok.bos_token_id, tok.eos_token_id} - {None}
    texts = set()
    for tokens in got:
        tokens = tokens.tolist()
        assert tokens[-1] == tok.eos_token_id
        assert (tokens[0] == tok.bos_token_id) is with_bos
        body = tokens[1:-1] if with_bos else tokens[:-1]
        assert not specials & set(body)  # literal "</s>", "<|endoftext|>" in a document stay text
        text = tok.decode(body)
        assert body == tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]  # transformers' ids
        texts.add(text)
    assert texts == set(docs.values())  # lossless, every document once
    text_tokens = metrics["train_tokens"] - (1 + int(with_bos)) * len(docs)
    assert metrics["train_chars_per_token"] == round(sum(map(len, docs.values())) / text_tokens, 4)
    assert check_shards(out, folder, tok) is not None  # pretraining accepts them (pad: null and None agree)


def test_pretraining_refuses_shards_with_other_special_ids(models, clean, tmp_path):
    """The bug this replaces: shards claiming the project's fixed pad id 3 for a tokenizer without pad."""
    from transformers import AutoTokenizer

    from kgov_train.errors import TrainDataError
    from kgov_train.train.data import check_shards

    folder, out = models["llama"], tmp_path / "shards"
    write_shards(clean, folder, out, validation_fraction=0.0, min_validation_docs=0, max_tokens_per_file=100_000,
                 batch_size=8, workers=1)
    index = json.loads((out / "index.json").read_text())
    (out / "index.json").write_text(json.dumps({**index, "pad_token_id": 3}))
    with pytest.raises(TrainDataError, match=r"pad_token_id: shards 3 vs tokenizer None"):
        check_shards(out, folder, AutoTokenizer.from_pretrained(folder))


def test_special_token_reader_follows_transformers_rules(models, tmp_path):
    """Each folder: the reader's ids are AutoTokenizer's."""
    from transformers import AutoTokenizer

    base = models["qwen2"]

    def folder(name: str, config: dict | None, smap: dict | None = None) -> tuple[tuple, tuple]:
        d = tmp_path / name
        d.mkdir()
        shutil.copyfile(base / "tokenizer.json", d / "tokenizer.json")
        if config is not None:
            (d / "tokenizer_config.json").write_text(json.dumps(config))
        if smap is not None:
            (d / "special_tokens_map.json").write_text(json.dumps(smap))
        own, tok = read_special_tokens(d), AutoTokenizer.from_pretrained(d)
        return (own.bos_id, own.eos_id, own.pad_id), (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)

    eot = read_special_tokens(base).eos_id
    ours, theirs = folder("bare", None)  # nothing named, no class: no special tokens at all
    assert ours == theirs == (None, None, None)
    with pytest.raises(ShardsWriteError, match="has no eos token"):
        write_shards(tmp_path, tmp_path / "bare", tmp_path / "out", validation_fraction=0.0, min_validation_docs=0,
                     max_tokens_per_file=10, batch_size=1, workers=1)
    ours, theirs = folder("cls", {"tokenizer_class": "Qwen2Tokenizer"})  # the class's defaults fill the gaps
    assert ours == theirs == (None, eot, eot)
    smap = {"bos_token": F.IM_START}  # special_tokens_map.json counts only without added_tokens_decoder
    ours, theirs = folder("map", {"eos_token": F.ENDOFTEXT}, smap)
    assert ours == theirs == (eot + 1, eot, None)
    ours, theirs = folder("dec", {"added_tokens_decoder": {}, "eos_token": F.ENDOFTEXT}, smap)
    assert ours == theirs == (None, eot, None)
    ours, theirs = folder("obj", {"eos_token": {"__type": "AddedToken", "content": F.IM_END}})
    assert ours == theirs == (None, eot + 2, None)
    with pytest.raises(SpecialTokensError, match=r"tokenizer_config.json: key 'pad_token' is '<pad>'"):
        folder("missing", {"eos_token": F.ENDOFTEXT, "pad_token": "<pad>"})  # transformers would add a new id


def test_extending_a_byte_level_base_keeps_its_ids_and_special_tokens(models, tmp_path):
    """Qwen2-shaped base: the extension keeps every base id and the base's special tokens (no bos, eos = pad)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    base = models["qwen2"]
    out = tmp_path / "ext"
    m = extend_tokenizer(base, KOREAN, out, target_vocab_size=1400)
    assert m["kind"] == "byte_level_bpe" and m["tokens_added"] > 100
    assert m["base_ids_kept"] and m["english_ids_unchanged"]
    b, e = Tokenizer.from_file(str(base / "tokenizer.json")), Tokenizer.from_file(str(out / "tokenizer.json"))
    ext_vocab = e.get_vocab(with_added_tokens=True)
    assert all(ext_vocab[t] == i for t, i in b.get_vocab(with_added_tokens=True).items())
    assert [x.ids for x in b.encode_batch(PROBES)] == [x.ids for x in e.encode_batch(PROBES)]
    tok = AutoTokenizer.from_pretrained(out)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (None, 1000, 1000) and len(tok) == 1400
    assert read_special_tokens(out).layout() == "text <|endoftext|>" and F.IM_START in tok.chat_template
    text = KOREAN[0][:300]
    assert len(tok(text)["input_ids"]) < len(AutoTokenizer.from_pretrained(base)(text)["input_ids"])
    assert m["chars_per_token_extended"] > m["chars_per_token_base"]


@pytest.fixture(scope="module")
def llama_run(models, tmp_path_factory) -> Path:
    """recipe=smoke from the Llama-2-shaped folder: its tokenizer extended, its weights continued, 2 steps."""
    run_dir = tmp_path_factory.mktemp("foundation_chain") / "run"
    run_chain(["recipe=smoke", f"run_dir={run_dir}", f"tokenizer.extend_from={models['llama']}",
               f"model.init_from={models['llama']}", "model.resize_embeddings=true",
               "stages=[data,tokenizer,shards,pretrain]", "pretrain.max_steps=2", "pretrain.save_steps=2",
               "pretrain.eval_sequences=2"])
    return run_dir


def test_chain_from_a_llama2_shaped_foundation_model(llama_run, models):
    from transformers import AutoTokenizer

    tok_metrics = manifest(llama_run / "tokenizer")["metrics"]
    assert tok_metrics["base_ids_kept"] and tok_metrics["english_ids_unchanged"] and tok_metrics["tokens_added"] > 0
    base, ext = AutoTokenizer.from_pretrained(models["llama"]), AutoTokenizer.from_pretrained(llama_run / "tokenizer")
    ext_vocab = ext.get_vocab()
    assert all(ext_vocab[t] == i for t, i in base.get_vocab().items())  # every base id kept
    assert len(ext) == 2000 and any("대" in t for t in set(ext_vocab) - set(base.get_vocab()))
    index = R.load_index(llama_run / "shards")
    assert (index["bos_token_id"], index["eos_token_id"], index["pad_token_id"]) == (1, 2, None)
    pre = manifest(llama_run / "pretrain")
    assert pre["status"] == "complete" and pre["metrics"]["steps"] == 2
    assert [r["step"] for r in metrics_rows(llama_run / "pretrain")] == [1, 2]
    assert pre["metrics"]["init_from"] == str(models["llama"]) and pre["metrics"]["embedding_rows_initialised"] > 0
    final = AutoTokenizer.from_pretrained(llama_run / "pretrain" / "final")
    assert (final.bos_token_id, final.eos_token_id, final.pad_token_id) == (1, 2, None)


def test_qwen2_shaped_extension_through_shards_to_pretrain_check(llama_run, models, tmp_path):
    """The Qwen2-shaped folder through tokenizer and shards on the same clean data; the shards pass pretraining's
    check with the extended tokenizer (no bos, eos = pad)."""
    from transformers import AutoTokenizer

    from kgov_train.train.data import check_shards

    run_dir = tmp_path / "run"
    shutil.copytree(llama_run / "data", run_dir / "data")
    run_chain(["recipe=smoke", f"run_dir={run_dir}", f"tokenizer.extend_from={models['qwen2']}",
               "stages=[tokenizer,shards]"])
    tok = AutoTokenizer.from_pretrained(run_dir / "tokenizer")
    index = check_shards(run_dir / "shards", run_dir / "tokenizer", tok)
    assert (index["bos_token_id"], index["eos_token_id"], index["pad_token_id"]) == (None, 1000, 1000)
    first = next(R.iter_documents(run_dir / "shards", "train")).tolist()
    assert first[-1] == 1000 and 1000 not in first[:-1]
