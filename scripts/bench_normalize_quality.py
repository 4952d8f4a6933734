"""Throughput of the normaliser and the quality filter, one process (one datatrove task).

Short review-like texts are built from ChatbotData (question + answer + an emoticon run,
~40-80 chars); long documents are the fixture laws and bills. Prints docs/s and MB/s.

    .venv/bin/python scripts/bench_normalize_quality.py [--n 100000]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from datatrove.data import Document

from data_prep.corpus.normalize import TextNormalizer
from data_prep.corpus.quality import QualityFilter

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
TAILS = ["ㅋㅋㅋㅋㅋ", " 추천합니다!!!!", "ㅠㅠㅠㅠ", " 배송도 빨랐어요~~~~", "\u200b 재구매 의사 있어요 ^^^^", "  "]


def short_texts(n: int) -> list[str]:
    with (DATA / "ko-chatbot" / "ChatbotData.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [f"{r['Q']} {r['A']}{TAILS[i % len(TAILS)]}\r\n" for i, r in
            ((i, rows[i % len(rows)]) for i in range(n))]


def bench(label: str, texts: list[str]) -> None:
    norm, quality = TextNormalizer(), QualityFilter()
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    t0 = time.perf_counter()
    docs = list(norm.run(Document(text=t, id=str(i), metadata={}) for i, t in enumerate(texts)))
    t1 = time.perf_counter()
    kept = sum("reason" not in d.metadata for d in quality.run(iter(docs)))
    t2 = time.perf_counter()
    n = len(texts)
    for step, secs in (("normalise", t1 - t0), ("quality", t2 - t1), ("both", t2 - t0)):
        print(f"{label:>22} {step:>9}: {n / secs:>9,.0f} docs/s {mb / secs:6.2f} MB/s")
    print(f"{label:>22}      kept: {kept}/{n}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000, help="short texts")
    args = ap.parse_args()
    bench("short review-like", short_texts(args.n))
    long_docs = [p.read_text("utf-8-sig") for p in sorted((DATA / "ko-gov-sample").glob("*.txt"))] * 20
    bench("laws and bills (x20)", long_docs)


if __name__ == "__main__":
    main()
