"""Extend an existing BPE tokenizer (continued pretraining of an open model) with Korean pieces.

Promise: every base id keeps its token, and text without a Hangul syllable (U+AC00-U+D7A3)
tokenizes exactly as before. Why it holds:
  - new pieces are only (a) Hangul syllables as single characters (sentencepiece-style bases with
    byte fallback: before, such a character fell back to 3 byte pieces) and (b) merges ranked after
    every base merge. The BPE applies merges best rank first, and a new merge's result is a new
    token that no base merge uses, so the base merges all run first and the new ones only join
    base tokens further: the extended ids of any text are a coarsening of the base ids.
  - a new merge is kept only if its result can only occur in text with a Hangul syllable:
    sentencepiece-style, the result contains one; byte-level, its bytes contain a complete UTF-8
    syllable or a lead byte with enough following bytes to force one (EB/EC alone, EA B0-BF,
    ED 80-9D, ED 9E 80-A3). UTF-8 is self-synchronising, so those bytes can only be the start of a
    syllable in the text. (A "complete syllable only" rule would admit no byte-level merge at all:
    the 2-byte prefixes every syllable is built from contain none.)

Method: the Korean texts are tokenized as the extended tokenizer will start on them (the base, plus
the candidate syllables), and a BPE is learned on top of those tokens, counting only admissible pairs;
each step adds the merge or syllable that saves the most tokens (learn_pieces). Training a fresh BPE
with `tokenizers` and filtering its merges afterwards works for sentencepiece-style bases but keeps
nothing for byte-level ones: a fresh byte-level BPE builds syllables from continuation-byte pairs
like B0+80, which also fire inside Chinese characters, so every merge built on them goes too.
The texts held out for the metrics (10%) are not learned from.

Torch-free: transformers is not imported here.
"""

from __future__ import annotations

import heapq
import json
import random
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer

from data_prep.tokenizer.special_ids import SpecialTokensError, read_special_tokens

SP_SPACE = "\u2581"
SYLLABLE_FIRST, SYLLABLE_LAST = 0xAC00, 0xD7A3
SENTENCEPIECE_BPE, BYTE_LEVEL_BPE = "sentencepiece_bpe", "byte_level_bpe"
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
# Slow-tokenizer files are not copied: a sentencepiece model (or GPT-2 vocab.json/merges.txt) describes the
# base vocabulary and would disagree with the extended tokenizer.json if anything loaded it instead.
_SLOW_FILES = ("tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json")
_COPIED = ("special_tokens_map.json", "chat_template.jinja")

# Text without Hangul syllables whose ids must not change: English, code, numbers, whitespace, other
# scripts, and Hangul that is not a syllable (jamo; ED 9E B0 shares its first two bytes with 힀-힣).
PROBES = [
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ", "multiple     spaces\tand\ttabs\n\nnew lines\r\n",
    "def f(x: int) -> dict[str, list[int]]:\n    return {\"a\": [x, x ** 2]}  # comment\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }", "SELECT id, name FROM users WHERE age >= 18;",
    "3.14159 2,718 1e-9 0x1F -42 100% $1,234.56 2024-12-31T23:59:59Z",
    "https://example.com/path?q=1&r=2 user@example.org", "<html><body class=\"x\">Hi</body></html>",
    "Don't stop; it's fine -- really... (yes!) [ok] {no} 'quoted' \"double\"",
    "naïve café résumé Ångström Straße", "中文 日本語のテキスト 漢字", "Привет мир ελληνικά",
    "emoji 😀👍🏽 👩‍👩‍👧 ✅", "ㅋㅋㅋ ㅠㅠ ㄱㄴㄷ ㅏㅑ", "\u1100\u1161 \ud7b0\ud7c6 \ud7fb \u3164 \uffa1",
    " ", "  ", "\n", "\t", "",
]


class TokenizerExtendError(ValueError):
    pass


def is_syllable(ch: str) -> bool:
    return SYLLABLE_FIRST <= ord(ch) <= SYLLABLE_LAST


def has_syllable(text: str) -> bool:
    return any(SYLLABLE_FIRST <= ord(c) <= SYLLABLE_LAST for c in text)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (the alphabet of byte-level vocabularies)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = list(bs), 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_BYTE_OF = {c: b for b, c in _bytes_to_unicode().items()}


def forces_syllable(b: bytes) -> bool:
    """True if valid UTF-8 text containing b must contain a Hangul syllable (see the module docstring)."""
    for i, x in enumerate(b):
        nxt = b[i + 1] if i + 1 < len(b) else None
        if x in (0xEB, 0xEC):  # U+B000-U+CFFF: all syllables
            return True
        if x == 0xEA and nxt is not None and 0xB0 <= nxt <= 0xBF:  # U+AC00-U+AFFF
            return True
        if x == 0xED and nxt is not None:
            if 0x80 <= nxt <= 0x9D:  # U+D000-U+D77F
                return True
            if nxt == 0x9E and i + 2 < len(b) and 0x80 <= b[i + 2] <= 0xA3:  # U+D780-U+D7A3
                return True
    return False


class _Alphabet:
    """What a token string means in the base's alphabet: which tokens may take part in new merges,
    and which merge results are admissible (Hangul-only, a space only at the start)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._mergeable: dict[str, bool] = {}

    def to_bytes(self, token: str) -> bytes:
        if self.kind == BYTE_LEVEL_BPE:
            return bytes(_BYTE_OF[c] for c in token)
        m = _BYTE_PIECE.fullmatch(token)
        return bytes([int(m[1], 16)]) if m else token.replace(SP_SPACE, " ").encode("utf-8")

    def surface(self, tokens: Iterable[str]) -> str:
        """The text the tokens stand for (U+FFFD for an incomplete UTF-8 sequence)."""
        return b"".join(self.to_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def mergeable(self, token: str) -> bool:
        ok = self._mergeable.get(token)
        if ok is None:
            if self.kind == BYTE_LEVEL_BPE:  # space, Hangul lead bytes, continuation bytes
                ok = all(c in _BYTE_OF and (_BYTE_OF[c] == 0x20 or 0x80 <= _BYTE_OF[c] <= 0xBF
                                            or 0xEA <= _BYTE_OF[c] <= 0xED) for c in token)
            else:  # byte pieces like <0xEA> never merge
                ok = all(c == SP_SPACE or is_syllable(c) for c in token)
            self._mergeable[token] = ok
        return ok

    def starts_with_space(self, token: str) -> bool:
        return _BYTE_OF.get(token[:1]) == 0x20 if self.kind == BYTE_LEVEL_BPE else token.startswith(SP_SPACE)

    def admissible(self, result: str) -> bool:
        if self.kind == BYTE_LEVEL_BPE:
            b = self.to_bytes(result)
            return 0x20 not in b[1:] and forces_syllable(b)
        return SP_SPACE not in result[1:] and has_syllable(result)


def _types(component) -> set[str]:
    """The "type" of a normalizer/pre-tokenizer/decoder and of everything inside a Sequence."""
    out: set[str] = set()
    if isinstance(component, dict):
        if "type" in component:
            out.add(component["type"])
        for v in component.values():
            out |= _types(v)
    elif isinstance(component, list):
        for v in component:
            out |= _types(v)
    return out


def _kind(data: dict, path: Path) -> str:
    model = data.get("model") or {}
    supported = ("supported: BPE tokenizers, sentencepiece-style (Metaspace/'▁', byte fallback, like Llama-2) "
                 "or byte-level (ByteLevel pre-tokenizer, like GPT-2/Llama-3)")
    if model.get("type") != "BPE":
        raise TokenizerExtendError(f"{path}: model type {model.get('type')!r} is not extendable; {supported}")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise TokenizerExtendError(f"{path}: BPE with continuing_subword_prefix/end_of_word_suffix; {supported}")
    if "ByteLevel" in _types(data.get("pre_tokenizer")) | _types(data.get("normalizer")):
        return BYTE_LEVEL_BPE
    meta = "Metaspace" in _types(data.get("pre_tokenizer")) | _types(data.get("decoder"))
    replace = SP_SPACE in json.dumps(data.get("normalizer"), ensure_ascii=False)  # Replace(" ", "▁") / Prepend("▁")
    if meta or replace:
        return SENTENCEPIECE_BPE
    raise TokenizerExtendError(f"{path}: a BPE tokenizer with neither ByteLevel nor '▁' (Metaspace) handling; "
                               f"{supported}")


def _vocab_size(data: dict) -> int:
    ids = list(data["model"]["vocab"].values()) + [t["id"] for t in data.get("added_tokens") or []]
    return max(ids) + 1 if ids else 0


def _with_pieces(data: dict, first_id: int, tokens: list[str], merges: list[tuple[str, str]]) -> dict:
    """The base tokenizer.json with tokens appended (ids from first_id) and merges ranked last."""
    out = json.loads(json.dumps(data))
    # tokenizers gives an added token that is not in the model vocab the next free id by count on load, so
    # with new ids past them they would move: pin them in the model vocab (they are matched before the
    # model ever sees the text, so the BPE never produces them).
    for t in out.get("added_tokens") or []:
        out["model"]["vocab"].setdefault(t["content"], t["id"])
    out["model"]["vocab"].update({t: first_id + i for i, t in enumerate(tokens)})
    as_strings = bool(out["model"]["merges"]) and isinstance(out["model"]["merges"][0], str)
    out["model"]["merges"] += [f"{a} {b}" if as_strings else [a, b] for a, b in merges]
    return out


def _learning_chunks(tok: Tokenizer, texts: list[str], alpha: _Alphabet) -> Counter:
    """Runs of mergeable tokens inside one pre-tokenized word, counted: the BPE training words."""
    id_to_token = {i: t for t, i in tok.get_vocab(with_added_tokens=True).items()}
    ok, starts = [False] * (max(id_to_token) + 1), [False] * (max(id_to_token) + 1)
    for i, t in id_to_token.items():
        ok[i] = alpha.mergeable(t)
        starts[i] = alpha.starts_with_space(t)  # a space only starts a new piece: nothing merges into it
    by_ids: Counter = Counter()
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        cur: list[int] = []
        prev = None
        for t, w in zip(enc.ids, enc.word_ids):
            if w != prev or not ok[t] or starts[t]:
                if len(cur) > 1:
                    by_ids[tuple(cur)] += 1
                cur = []
                prev = w
            if ok[t]:
                cur.append(t)
        if len(cur) > 1:
            by_ids[tuple(cur)] += 1
    return Counter({tuple(id_to_token[i] for i in ids): n for ids, n in by_ids.items()})


def learn_pieces(chunks: Counter, vocab: set[str], alpha: _Alphabet, budget: int, min_frequency: int,
                 syllables: dict[str, int] | None = None) -> tuple[list[tuple[str, str]], str]:
    """Greedy BPE over the chunks: each step adds what saves the most tokens, a merge of an admissible pair
    (saves its count) or one of the candidate syllables (3 byte pieces -> 1: saves twice its frequency; a
    pair waits until its syllables are in). Ties go to the smaller strings, so the result is deterministic.
    Returns (steps, why it stopped); a step is (a, b) for the merge a+b, or (syllable, "")."""
    vocab = set(vocab)
    words = [list(w) for w in sorted(chunks)]
    counts = [chunks[w] for w in sorted(chunks)]
    ok_cache: dict[str, bool] = {}

    def counted(p: tuple[str, str]) -> bool:  # admissible and not yet in the vocabulary
        r = p[0] + p[1]
        ok = ok_cache.get(r)
        if ok is None:
            ok = ok_cache[r] = alpha.admissible(r)
        return ok and r not in vocab

    stats: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for i, w in enumerate(words):
        for p in zip(w, w[1:]):
            if counted(p):
                stats[p] += counts[i]
                where.setdefault(p, set()).add(i)
    heap = [(-n, a, b) for (a, b), n in stats.items()] + [(-2 * n, c, "") for c, n in (syllables or {}).items()]
    heapq.heapify(heap)
    waiting: dict[str, list[tuple[str, str]]] = {}  # syllable -> pairs that need it in the vocabulary
    steps: list[tuple[str, str]] = []

    def change(p: tuple[str, str], d: int, i: int, grown: set) -> None:  # counted(p) inlined: the hot path
        r = p[0] + p[1]
        ok = ok_cache.get(r)
        if ok is None:
            ok = ok_cache[r] = alpha.admissible(r)
        if ok and r not in vocab:
            stats[p] += d
            if d > 0:
                where.setdefault(p, set()).add(i)
                grown.add(p)

    while len(steps) < budget:
        if not heap:
            return steps, "no admissible Hangul piece left in the texts"
        neg, a, b = heapq.heappop(heap)
        if not b:  # a syllable: its pairs may go now
            steps.append((a, ""))
            vocab.add(a)
            for p in waiting.pop(a, []):
                heapq.heappush(heap, (-stats[p], p[0], p[1]))
            continue
        cur = stats.get((a, b), 0)
        if cur != -neg or a + b in vocab:  # stale entry (counts only fall) or result made by another pair
            if cur > 0 and a + b not in vocab:
                heapq.heappush(heap, (-cur, a, b))
            continue
        if cur < min_frequency:
            return steps, f"no admissible Hangul pair with frequency >= min_frequency={min_frequency} left"
        missing = next((x for x in (a, b) if x not in vocab), None)
        if missing is not None:
            waiting.setdefault(missing, []).append((a, b))
            continue
        steps.append((a, b))
        new = a + b
        vocab.add(new)
        del stats[(a, b)]
        grown: set = set()
        for i in sorted(where.pop((a, b), ())):
            w, c, out, j = words[i], counts[i], [], 0
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    if out:  # the neighbours' pairs move to the new token (as tokenizers' Word::merge)
                        change((out[-1], a), -c, i, grown)
                        change((out[-1], new), c, i, grown)
                    if j + 2 < len(w):
                        change((b, w[j + 2]), -c, i, grown)
                        change((new, w[j + 2]), c, i, grown)
                    out.append(new)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
        for p in sorted(grown):  # only pairs with the new token grow; falling counts are fixed on pop
            heapq.heappush(heap, (-stats[p], p[0], p[1]))
    return steps, "target_vocab_size reached"


def _candidate_syllables(tok: Tokenizer, texts: list[str], vocab: set[str], min_frequency: int) -> dict[str, int]:
    """Syllables the base never sees whole (they fall back to bytes), with their frequency."""
    norm = tok.normalizer
    freq: Counter = Counter()
    for t in texts:
        freq.update(norm.normalize_str(t) if norm is not None else t)
    return {c: n for c, n in sorted(freq.items()) if is_syllable(c) and c not in vocab and n >= min_frequency}


def _compositions(base_data: dict, steps: list[tuple[str, str]]) -> dict[str, list[int]]:
    """base ids each new token replaces: the byte pieces of a syllable, the parts' ids for a merge."""
    vocab = base_data["model"]["vocab"]
    comp: dict[str, list[int]] = {}
    for a, b in steps:
        if not b:
            ids = [vocab.get(f"<0x{x:02X}>") for x in a.encode("utf-8")]
            comp[a] = ids if base_data["model"].get("byte_fallback") and None not in ids else []
            continue
        pa, pb = comp.get(a, [vocab[a]] if a in vocab else []), comp.get(b, [vocab[b]] if b in vocab else [])
        comp[a + b] = pa + pb if pa and pb else []
    return comp


def _split(n: int, seed: int) -> tuple[list[int], str]:
    """(indices of the texts to measure on, what they are): 10% held out from learning when there are 10+."""
    if n < 10:
        return list(range(n)), f"all {n} texts (fewer than 10: none held out)"
    held = sorted(random.Random(seed).sample(range(n), n // 10))
    return held, f"{len(held)} held-out texts (10%, seed {seed}), not used to learn"


def _ids(tok: Tokenizer, texts: list[str], special: bool = False) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=special)]


def _chars_per_token(texts: list[str], ids: list[list[int]]) -> float:
    return round(sum(map(len, texts)) / max(1, sum(map(len, ids))), 4)


def _write_configs(base_dir: Path, out_dir: Path, data: dict) -> None:
    cfg_path = base_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    try:
        specials = read_special_tokens(base_dir, data)
    except SpecialTokensError as e:
        raise TokenizerExtendError(str(e)) from None
    # transformers 5 rebuilds e.g. LlamaTokenizer/GPT2Tokenizer from vocab+merges with its own pre-tokenizer;
    # TokenizersBackend loads tokenizer.json as it is (see export.py). It has no default special tokens of its
    # own, so those the base had by its class's defaults are named (the shards read them the same way).
    cfg["tokenizer_class"] = "TokenizersBackend"
    for key, token in specials.as_config().items():
        cfg.setdefault(key, token)
    for k in ("vocab_file", "merges_file", "sp_model_kwargs", "legacy", "auto_map"):
        cfg.pop(k, None)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n",
                                                   encoding="utf-8")
    for name in _COPIED:
        if (base_dir / name).is_file():
            shutil.copyfile(base_dir / name, out_dir / name)


def extend_tokenizer(base_dir: Path, texts: Iterable[str], out_dir: Path, *, target_vocab_size: int,
                     seed: int = 0, min_frequency: int = 2) -> dict:
    """Write out_dir/{tokenizer.json, tokenizer_config.json, special_tokens_map.json, extension.json}; returns
    metrics. The texts are held in memory (a sample to learn pieces from, not the pretraining corpus); seed
    picks the 10% held out for measuring.

    extension.json "added": per new id, its vocabulary string ("token"), the text it stands for ("text"; U+FFFD
    marks a partial character of a byte-level piece) and "base_ids": the base ids it replaces wherever it
    occurs (a syllable's byte pieces, a merge's parts), so expanding extended ids gives the base ids back."""
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    path = base_dir / "tokenizer.json"
    if not path.is_file():
        raise TokenizerExtendError(f"{path}: not found; base_dir must be a local Hugging Face tokenizer folder")
    data = json.loads(path.read_text(encoding="utf-8"))
    kind = _kind(data, path)
    base = Tokenizer.from_str(json.dumps(data))
    n_base = _vocab_size(data)
    if target_vocab_size <= n_base:
        raise TokenizerExtendError(
            f"target_vocab_size={target_vocab_size} must exceed the base's {n_base} ids ({path})")
    if out_dir.resolve() == base_dir.resolve():
        raise TokenizerExtendError(f"out_dir {out_dir} is the base folder; write the extension elsewhere")
    stale = [n for n in _SLOW_FILES if (out_dir / n).exists()]
    if stale:
        raise TokenizerExtendError(f"{out_dir} holds {stale}: they would disagree with the extended tokenizer.json")
    texts = [t for t in texts if t]
    if not texts:
        raise TokenizerExtendError("texts: no non-empty text to learn Korean pieces from")
    measure, measured_on = _split(len(texts), seed)
    held = set(measure) if len(measure) < len(texts) else set()
    train = [t for i, t in enumerate(texts) if i not in held]
    alpha = _Alphabet(kind)
    existing = set(data["model"]["vocab"]) | {t["content"] for t in data.get("added_tokens") or []}
    budget = target_vocab_size - n_base

    # Candidate syllables (sentencepiece-style; in a byte-level vocabulary every byte exists already) go into
    # the learning tokenizer, so the texts are read in the pieces the extended tokenizer will start from.
    syllables = _candidate_syllables(base, train, existing, min_frequency) if kind == SENTENCEPIECE_BPE else {}
    learner = Tokenizer.from_str(json.dumps(_with_pieces(data, n_base, list(syllables), [])))
    steps, stop = learn_pieces(_learning_chunks(learner, train, alpha), existing, alpha, budget, min_frequency,
                               syllables)
    new_tokens = [a + b for a, b in steps]
    ext = Tokenizer.from_str(json.dumps(_with_pieces(data, n_base, new_tokens, [(a, b) for a, b in steps if b])))

    out_dir.mkdir(parents=True, exist_ok=True)
    ext.save(str(out_dir / "tokenizer.json"), pretty=True)
    _write_configs(base_dir, out_dir, data)
    comp = _compositions(data, steps)
    added = [{"id": n_base + i, "token": t, "text": alpha.surface([t]), "base_ids": comp[t]}
             for i, t in enumerate(new_tokens)]
    extension = {"base": str(base_dir), "base_vocab_size": n_base, "vocab_size": n_base + len(new_tokens),
                 "kind": kind, "added": added}
    (out_dir / "extension.json").write_text(json.dumps(extension, ensure_ascii=False, indent=1) + "\n",
                                            encoding="utf-8")
    return _metrics(base, Tokenizer.from_file(str(out_dir / "tokenizer.json")), texts, measure, measured_on,
                    extension, sum(not b for _, b in steps), stop, target_vocab_size)


def _metrics(base: Tokenizer, ext: Tokenizer, texts: list[str], measure: list[int], measured_on: str,
             extension: dict, n_chars: int, stop: str, target: int) -> dict:
    ext_vocab = ext.get_vocab(with_added_tokens=True)
    ids_kept = all(ext_vocab.get(t) == i for t, i in base.get_vocab(with_added_tokens=True).items())
    probes_same = sum(a == b for a, b in zip(_ids(base, PROBES, True), _ids(ext, PROBES, True)))
    lines = sorted({ln for t in texts for ln in t.splitlines() if ln and not has_syllable(ln)})
    lines_same = sum(a == b for a, b in zip(_ids(base, lines, True), _ids(ext, lines, True)))
    # lossless: the extended tokenizer round-trips every text the base round-trips
    all_base, all_ext = _ids(base, texts), _ids(ext, texts)
    base_ok = [d == t for t, d in zip(texts, base.decode_batch(all_base, skip_special_tokens=False))]
    ext_back = ext.decode_batch(all_ext, skip_special_tokens=False)
    ext_fail = sum(ok and d != t for ok, t, d in zip(base_ok, texts, ext_back))
    # the extended ids are the base ids with runs joined: expanding each new id by its base_ids gives them back
    expand = {a["id"]: a["base_ids"] for a in extension["added"]}
    coarsening = sum(
        [j for i in e for j in expand.get(i, [i])] == b for b, e in zip(all_base, all_ext))
    n_added = len(extension["added"])
    measured = [texts[i] for i in measure]
    return {
        "kind": extension["kind"], "base_vocab_size": extension["base_vocab_size"],
        "vocab_size": extension["vocab_size"],
        "target_vocab_size": target, "target_reached": extension["vocab_size"] >= target,
        "stop_reason": stop, "tokens_added": n_added, "syllables_added": n_chars, "merges_added": n_added - n_chars,
        "added_without_base_ids": sum(not a["base_ids"] for a in extension["added"]),
        "texts": len(texts), "measured_on": measured_on,
        "chars_per_token_base": _chars_per_token(measured, [all_base[i] for i in measure]),
        "chars_per_token_extended": _chars_per_token(measured, [all_ext[i] for i in measure]),
        "base_ids_kept": ids_kept, "english_probes": len(PROBES), "english_ids_unchanged": probes_same == len(PROBES),
        "non_hangul_lines": len(lines), "non_hangul_lines_unchanged": lines_same == len(lines),
        "base_roundtrip_failures": len(texts) - sum(base_ok), "roundtrip_failures": int(ext_fail),
        "roundtrip_exact": ext_fail == 0, "texts_extended_ids_expand_to_base_ids": int(coarsening),
    }
