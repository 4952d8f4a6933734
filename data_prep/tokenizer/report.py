"""Score tokenizers on held-out text of each source: tokenizer/report.json and a readable report.md.

Any tokenizer.json can be scored, so the recipe's `tokenizer.baseline` (e.g. an English-centric
model's tokenizer) sits beside ours with the same figures:
  chars_per_token, bytes_per_token   higher = more text per token (cheaper training and inference)
  byte_fallback_rate                 share of tokens that are <0xNN> byte pieces (characters the vocab lacks)
  unk_rate                           share of <unk> tokens (information lost)
  roundtrip_exact                    share of documents with decode(encode(x)) == x
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer

_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


def load_tokenizer_json(folder: str | Path) -> Tokenizer:
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; a tokenizer folder needs tokenizer.json (a transformers fast tokenizer)")
    return Tokenizer.from_file(str(path))


def score(tok: Tokenizer, docs: Iterable[tuple[str, str]]) -> dict:
    vocab = tok.get_vocab(with_added_tokens=True)
    byte_ids = {i for p, i in vocab.items() if _BYTE_PIECE.match(p)}
    unk_id = vocab.get(getattr(tok.model, "unk_token", None) or "<unk>")  # byte-level BPEs have none
    docs = list(docs)
    texts = [t for _, t in docs]
    n = {"documents": len(docs), "chars": 0, "bytes": 0, "tokens": 0, "byte_tokens": 0, "unk_tokens": 0, "exact": 0}
    failures: list[str] = []
    for (doc_id, text), enc in zip(docs, tok.encode_batch(texts, add_special_tokens=False)):
        ids = enc.ids
        n["chars"] += len(text)
        n["bytes"] += len(text.encode("utf-8"))
        n["tokens"] += len(ids)
        n["byte_tokens"] += sum(i in byte_ids for i in ids)
        n["unk_tokens"] += sum(i == unk_id for i in ids) if unk_id is not None else 0
        if tok.decode(ids, skip_special_tokens=False) == text:
            n["exact"] += 1
        elif len(failures) < 5:
            failures.append(doc_id)
    t = max(n["tokens"], 1)
    return {**n, "chars_per_token": round(n["chars"] / t, 4), "bytes_per_token": round(n["bytes"] / t, 4),
            "byte_fallback_rate": round(n["byte_tokens"] / t, 6), "unk_rate": round(n["unk_tokens"] / t, 6),
            "roundtrip_exact": round(n["exact"] / max(n["documents"], 1), 6), "roundtrip_failures": failures}


def evaluate(tokenizers: dict[str, Tokenizer], heldout: dict[str, list[tuple[str, str]]]) -> dict:
    """{tokenizer name: {"all": figures, "sources": {source: figures}}}."""
    out = {}
    every = [d for docs in heldout.values() for d in docs]
    for name, tok in tokenizers.items():
        out[name] = {"all": score(tok, every), "sources": {s: score(tok, docs) for s, docs in sorted(heldout.items())}}
    return out


_COLUMNS = ("chars_per_token", "bytes_per_token", "byte_fallback_rate", "unk_rate", "roundtrip_exact")


def write_reports(out_dir: Path, report: dict) -> list[str]:
    """report.json (everything) and report.md (the tables); returns the file names."""
    out_dir = Path(out_dir)
    (out_dir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    lines = ["# Tokenizer report", ""]
    facts = report.get("tokenizer", {})
    lines += [f"- {k}: {v}" for k, v in facts.items()] + [""]
    scored = report.get("scored_on", "held-out documents")
    lines += [f"Scored on {scored}.", ""]
    lines += ["| tokenizer | source | documents | chars | tokens | " + " | ".join(_COLUMNS) + " |",
              "|---|---|---:|---:|---:|" + "---:|" * len(_COLUMNS)]
    for name, res in report.get("evaluation", {}).items():
        for source, fig in [("all", res["all"]), *res["sources"].items()]:
            lines.append(f"| {name} | {source} | {fig['documents']} | {fig['chars']} | {fig['tokens']} | "
                         + " | ".join(str(fig[c]) for c in _COLUMNS) + " |")
    sample = report.get("sample_sources")
    if sample:
        lines += ["", "## Training sample", "", "| source | rate | train chars | share | held-out documents |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {s} | {v['rate']} | {v['train_chars']} | {v['train_share']} | {v['heldout_documents']} |"
                  for s, v in sample.items()]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["report.json", "report.md"]
