"""Decontamination: documents that share a long character n-gram with an evaluation set.

N-grams are taken on the same key as near-dedup (near_dedup/textkey.py: no whitespace,
punctuation or emoticons, lower-cased, runs squeezed), in characters rather than words:
Korean spacing is inconsistent, so a copied eval question re-spaced or re-punctuated
would escape word n-grams but not these. 50 key characters are about 13 Korean words,
the length GPT-3 and its successors used for their 13-gram overlap checks; a shared run
that long is copying, not common phrasing.

An eval item whose key is shorter than `ngram` (a short question) is matched whole when
it has at least `min_item_chars` characters, and skipped below that (too generic to mean
anything). The eval n-grams are built once per task, as one sorted numpy array of 64-bit
hashes (8 bytes per n-gram plus 4 for its item).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import orjson
from datatrove.data import Document, DocumentsPipeline

from data_prep.corpus import records as R
from data_prep.corpus.near_dedup.textkey import WindowHasher, batches, keys
from data_prep.corpus.step import CorpusStep

KEY = "data.decontam"
FLAG = "contaminated"  # metadata key set with action=flag
ACTIONS = ("drop", "flag")
_SNIPPET_CHARS = 80
HITS = "hits:"  # counter prefix: documents whose first match is in that eval file (dropped or flagged)


@dataclass
class DecontamSettings:
    enabled: bool = False  # check documents against the evaluation sets below
    eval_files: List[str] = field(default_factory=list)  # local .jsonl(.gz) / .txt(.gz) files, one eval item a line
    text_key: str = "text"  # jsonl key of an eval item's text; a list of strings (e.g. choices) is joined
    ngram: int = 50  # key characters per n-gram (spaces/punctuation removed): ~13 Korean words
    min_item_chars: int = 20  # eval items with a shorter key than ngram are matched whole from this length on
    min_matches: int = 1  # n-gram windows of a document found in the eval sets for it to count as contaminated
    action: str = "drop"  # drop: reject as `contaminated`; flag: keep it, with metadata["contaminated"]
    # benchmarks of lm-eval (eval.benchmarks' names) whose items are checked too; null: eval.benchmarks. The data
    # stage writes their items into eval files of its own (kgov_train.evaluation.benchmark_items) before this runs.
    benchmarks: Optional[List[str]] = None

    def validate(self) -> None:
        """Raise ValueError naming the offending `data.decontam.<field>`."""
        if self.action not in ACTIONS:
            raise ValueError(f"{KEY}.action must be one of {', '.join(ACTIONS)}, got {self.action!r}")
        for name in ("ngram", "min_item_chars", "min_matches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{KEY}.{name} must be >= 1, got {getattr(self, name)}")
        if not self.enabled:
            return
        if not self.eval_files:
            raise ValueError(f"{KEY}.eval_files is empty: list the evaluation sets to check against, "
                             f"or set {KEY}.enabled=false")
        for i, f in enumerate(self.eval_files):
            p = Path(f)
            if not p.is_file():
                raise ValueError(f"{KEY}.eval_files[{i}]: {f} " + ("is not a file" if p.exists() else "does not exist"))
            if not p.name.lower().endswith((".jsonl", ".jsonl.gz", ".txt", ".txt.gz")):
                raise ValueError(f"{KEY}.eval_files[{i}]: {f}: use .jsonl, .jsonl.gz, .txt or .txt.gz")


def _eval_items(path: str, index: int, text_key: str):
    """(line, text) of every item of one eval file."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    jsonl = ".jsonl" in Path(path).name.lower()
    with opener(path, "rb") as f:
        for line, raw in enumerate(f, 1):
            raw = raw.strip()
            if not raw:
                continue
            if not jsonl:
                yield line, raw.decode("utf-8")
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                raise ValueError(f"{KEY}.eval_files[{index}]: {path}:{line} is not JSON: {e}") from e
            text = obj.get(text_key) if isinstance(obj, dict) else None
            if isinstance(text, list):
                text = "\n".join(str(t) for t in text)
            if not isinstance(text, str):
                raise ValueError(f"{KEY}.eval_files[{index}]: {path}:{line} has no string under "
                                 f"{KEY}.text_key={text_key!r}")
            yield line, text


@dataclass
class EvalNgrams:
    """Sorted n-gram hashes of all eval items, the item each came from, and the window lengths to try."""

    hashes: np.ndarray  # uint64, sorted, distinct
    item: np.ndarray  # int64 index into `where`
    where: list[tuple[str, int]]  # (eval file, line) per item
    lengths: list[int]  # window lengths: ngram, plus the key lengths of short items matched whole
    skipped: int  # items too short to match

    @classmethod
    def build(cls, s: DecontamSettings) -> "EvalNgrams":
        where: list[tuple[str, int]] = []
        texts: list[str] = []
        for i, path in enumerate(s.eval_files):
            for line, text in _eval_items(path, i, s.text_key):
                where.append((path, line))
                texts.append(text)
        hs, items, lengths, skipped = [], [], {s.ngram}, 0
        for lo in range(0, len(texts), 2048):
            k = keys(texts[lo:lo + 2048])
            hasher = WindowHasher(k)
            h, start = hasher.windows(s.ngram)
            hs.append(h)
            items.append(k.seg[start].astype(np.int64) + lo)
            short = np.flatnonzero((k.lengths < s.ngram) & (k.lengths >= s.min_item_chars))
            skipped += int(((k.lengths < s.min_item_chars) & (k.lengths < s.ngram)).sum())
            hs.append(hasher.whole(short))
            items.append(short + lo)
            lengths.update(k.lengths[short].tolist())
        h = np.concatenate(hs) if hs else np.empty(0, np.uint64)
        item = np.concatenate(items) if items else np.empty(0, np.int64)
        h, first = np.unique(h, return_index=True)  # the first item holding an n-gram names it
        return cls(h, item[first], where, sorted(lengths), skipped)

    def matches(self, texts: list[str]) -> list[tuple[int, int, int, int] | None]:
        """Per text: None, or (matching windows, eval item, snippet start, snippet end in the text)."""
        out: list[tuple[int, int, int, int] | None] = [None] * len(texts)
        if self.hashes.size == 0:
            return out
        k = keys(texts, positions=True)
        hasher = WindowHasher(k)
        count = np.zeros(len(texts), dtype=np.int64)
        for length in self.lengths:
            h, start = hasher.windows(length)
            pos = np.minimum(np.searchsorted(self.hashes, h), self.hashes.size - 1)
            hit = np.flatnonzero(self.hashes[pos] == h)
            if hit.size == 0:
                continue
            seg = k.seg[start[hit]]
            count += np.bincount(seg, minlength=len(texts))
            for t, first in zip(*np.unique(seg, return_index=True)):
                if out[t] is None:  # the first length that matched names the item and the snippet
                    j = hit[first]
                    out[t] = (0, int(self.item[pos[j]]), int(k.pos[start[j]]), int(k.pos[start[j] + length - 1]) + 1)
        return [None if o is None else (int(count[t]), *o[1:]) for t, o in enumerate(out)]


class Decontaminate(CorpusStep):
    """Split pass, after the quality filters: drops (or flags) documents sharing long n-grams with eval sets."""

    type = "🔻 - FILTER"
    name = "decontaminate (eval-set character n-grams)"

    def __init__(self, settings: DecontamSettings):
        super().__init__()
        settings.validate()  # missing eval files fail here, before any task starts
        self.settings = settings

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        s = self.settings
        if not s.enabled:
            yield from data
            return
        with self.track_time():
            ngrams = EvalNgrams.build(s)  # once per task
        for batch in batches(data):
            with self.track_time():
                todo = [d for d in batch if not R.is_rejected(d)]
                found = ngrams.matches([d.text for d in todo]) if todo else []
                self.stat_update("checked", value=len(todo))
                for doc, m in zip(todo, found):
                    if m is not None and m[0] >= s.min_matches:
                        self._mark(doc, ngrams, *m)
            yield from batch

    def _mark(self, doc: Document, ngrams: EvalNgrams, count: int, item: int, a: int, b: int) -> None:
        path, line = ngrams.where[item]
        self.stat_update(HITS + path)
        snippet = doc.text[a:b]
        if len(snippet) > _SNIPPET_CHARS:
            snippet = snippet[:_SNIPPET_CHARS] + "…"
        if self.settings.action == "drop":
            R.reject(doc, R.CONTAMINATED, f"{count} eval n-gram match(es), first with {path}:{line}: '{snippet}'")
            self.stat_update(f"rejected_{R.CONTAMINATED}")
        else:
            doc.metadata[FLAG] = {"eval_file": path, "eval_line": line, "matches": count, "snippet": snippet}
            self.stat_update("flagged")
