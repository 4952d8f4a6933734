"""Checks and metrics of a trained tokenizer: losslessness, fast == sentencepiece, compression."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import sentencepiece as spm
from tokenizers import Tokenizer

from data_prep.tokenizer import specials as S

# Strings that break lossy setups: leading/trailing/repeated spaces, blank lines, tabs, CRLF,
# digits, Hanja (common and outside any small vocabulary), emoji with ZWJ and skin tone,
# full-width and ideographic spaces, NFC Hangul next to jamo, role markers, Latin.
PROBES = [
    "대한민국은 민주공화국이다.",
    "  제1조(목적) 이 법은   공무원의 복무에 관한 사항을 규정한다.  ",
    "\n\n제2조\n\n\n  ① 항목\t\t탭\r\n끝\n",
    "예산 1,234,567,890원 (2024. 12. 31.) 제63조제2항제4호",
    "大韓民國 憲法 前文 龘 𠀋 丼",
    "민원 처리 😀👍🏽 👩‍👩‍👧 ✅",
    "전각ＡＢＣ　공백　·※「」『』",
    "한글 자모 ㄱㄴㄷ ㅏㅑ 와 옛한글 ᄀᆞ",
    "<|system|>\n지침<|user|>\n질문<|assistant|>\n답",
    "Mixed 한국어 and English, e-mail: gov@korea.kr",
    " ", "  ", "\n", "\t", "",
]


@dataclass
class Report:
    documents: int = 0
    chars: int = 0
    utf8_bytes: int = 0
    tokens: int = 0
    byte_tokens: int = 0
    roundtrip_failures: list[str] = field(default_factory=list)  # doc ids (or probe reprs)
    mismatches: list[str] = field(default_factory=list)  # fast ids != spm ids
    meta_text: int = 0  # documents with a literal "<s>", "</s>", "<unk>" or "<pad>": ids not compared

    def metrics(self) -> dict:
        t = max(self.tokens, 1)
        return {
            "eval_documents": self.documents, "eval_chars": self.chars, "eval_tokens": self.tokens,
            "chars_per_token": round(self.chars / t, 4), "bytes_per_token": round(self.utf8_bytes / t, 4),
            "byte_fallback_rate": round(self.byte_tokens / t, 6),
            "roundtrip_failures": len(self.roundtrip_failures), "fast_spm_mismatches": len(self.mismatches),
            "eval_documents_with_meta_token_text": self.meta_text,
        }


def load(tokenizer_dir: Path) -> tuple[spm.SentencePieceProcessor, Tokenizer]:
    return (spm.SentencePieceProcessor(model_file=str(Path(tokenizer_dir) / "tokenizer.model")),
            Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json")))


def compare(sp: spm.SentencePieceProcessor, fast: Tokenizer, items: Iterable[tuple[str, str]]) -> Report:
    """Encode (name, text) items with both tokenizers; count tokens; record any loss or mismatch."""
    rep = Report()
    byte_ids = np.array([i for i in range(sp.get_piece_size()) if sp.is_byte(i)])
    items = list(items)
    texts = [t for _, t in items]
    spm_ids = sp.encode(texts)
    fast_ids = [e.ids for e in fast.encode_batch(texts, add_special_tokens=False)]
    for (name, text), a, b in zip(items, spm_ids, fast_ids):
        rep.documents += 1
        rep.chars += len(text)
        rep.utf8_bytes += len(text.encode("utf-8"))
        rep.tokens += len(b)
        rep.byte_tokens += int(np.isin(np.asarray(b, dtype=np.int64), byte_ids).sum())
        if any(m in text for m in S.META):
            rep.meta_text += 1  # by design: sentencepiece reads them as text, tokenizer.json as special tokens
        elif a != b:
            rep.mismatches.append(name)
        if sp.decode(a) != text or fast.decode(b, skip_special_tokens=False) != text:
            rep.roundtrip_failures.append(name)
    return rep


def check_probes(sp: spm.SentencePieceProcessor, fast: Tokenizer) -> Report:
    return compare(sp, fast, ((repr(p), p) for p in PROBES))
