"""Which documents of data/clean train the tokenizer and which are held out to score it.

A multi-GB corpus never has to fit in memory: one streaming pass decides per document
from a hash of its id (the same sha256 rule as the shards' validation split):
  u = id_hash(id) / 2**64
  held out   if u < heldout_fraction  (scored in the report, at most heldout_chars per source)
  training   else if the rest of u, rescaled to [0, 1), is below the source's rate
Rates share `sample_chars` between sources by their recipe weights: source s aims at
sample_chars * w_s / sum(w) characters, i.e. rate = min(1, that / its characters). A
source smaller than its share is taken whole; the realised shares are in the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

from data_prep.hashing import id_hash

_RANGE = float(1 << 64)


def source_rates(source_chars: dict[str, int], weights: dict[str, float], sample_chars: int,
                 heldout_fraction: float = 0.0) -> dict[str, float]:
    """Training-sample rate per source (1.0 = every document not held out)."""
    if not source_chars:
        return {}
    total_w = sum(max(weights.get(s, 1.0), 0.0) for s in source_chars) or 1.0
    rates = {}
    for s, chars in source_chars.items():
        target = sample_chars * max(weights.get(s, 1.0), 0.0) / total_w
        available = chars * (1.0 - heldout_fraction)
        rates[s] = 1.0 if available <= 0 else min(1.0, target / available)
    return rates


@dataclass
class Sampler:
    rates: dict[str, float]  # per source; a source not listed (no data-stage figures) is taken whole
    heldout_fraction: float
    heldout_chars: int
    train_chars: dict[str, int] = field(default_factory=dict)
    heldout: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # source -> (id, text)
    _held_chars: dict[str, int] = field(default_factory=dict)

    def training_texts(self, records: Iterable[tuple[str, str, str]]) -> Iterator[str]:
        """The training documents' texts; fills `heldout` and `train_chars` on the way."""
        hf = self.heldout_fraction
        for doc_id, text, source in records:
            u = id_hash(doc_id) / _RANGE
            if u < hf:
                used = self._held_chars.get(source, 0)
                if used < self.heldout_chars:
                    self.heldout.setdefault(source, []).append((doc_id, text))
                    self._held_chars[source] = used + len(text)
                continue
            if (u - hf) / (1.0 - hf) < self.rates.get(source, 1.0):
                self.train_chars[source] = self.train_chars.get(source, 0) + len(text)
                yield text

    def metrics(self) -> dict:
        total = sum(self.train_chars.values()) or 1
        return {"sample_sources": {
            s: {"rate": round(self.rates.get(s, 1.0), 6), "train_chars": c, "train_share": round(c / total, 4),
                "heldout_documents": len(self.heldout.get(s, [])), "heldout_chars": self._held_chars.get(s, 0)}
            for s, c in sorted({**{k: 0 for k in self.heldout}, **self.train_chars}.items())}}
