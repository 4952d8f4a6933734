"""Throughput of the corpus readers on generated inputs: HWP 5 and HWPX text extraction, csv rows.

    python scripts/bench_readers.py [--paragraphs 20000] [--rows 200000]

Prints chars/s (HWP, HWPX) and rows/s (csv) for one process; the split pass runs one such
reader per task. The documents are built in code (tests/hwp_fixtures.py), one large file each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_prep.corpus.readers import CorpusReader, InputFile  # noqa: E402
from tests import hwp_fixtures as F  # noqa: E402

LINE = "제{}조(목적) 이 법은 공무원의 육아휴직에 관하여 필요한 사항을 규정함을 목적으로 한다. 금액은 1,234,567원이다."


def timed(path: Path, **keys) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    docs = list(CorpusReader([InputFile(str(path), sha256="-", **keys)]).run())
    return time.perf_counter() - t0, len(docs), sum(len(d.text) for d in docs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paragraphs", type=int, default=20000)
    ap.add_argument("--rows", type=int, default=200000)
    a = ap.parse_args()
    import logging
    from datatrove.utils.logging import logger
    logger.remove()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        lines = [LINE.format(i) for i in range(a.paragraphs)]
        body = b"".join(F.paragraph(s + F.FOOTNOTE_CTRL if i % 10 == 0 else s) for i, s in enumerate(lines))
        (d / "big.hwp").write_bytes(F.hwp5([body]))
        (d / "big.hwpx").write_bytes(F.hwpx([F.section_xml(*(F.p(F.run(F.t(s))) for s in lines))]))
        (d / "big.csv").write_text("id,text\n" + "".join(f"r{i},\"{LINE.format(i)}\"\n" for i in range(a.rows)),
                                   encoding="utf-8")
        for name in ("big.hwp", "big.hwpx"):
            secs, n, chars = timed(d / name)
            mb = (d / name).stat().st_size / 1e6
            print(f"{name}: {a.paragraphs} paragraphs, {chars / 1e6:.2f}M chars from {mb:.1f} MB in {secs:.2f}s "
                  f"= {chars / secs / 1e6:.2f}M chars/s")
        secs, n, chars = timed(d / "big.csv")
        print(f"big.csv: {n} rows in {secs:.2f}s = {n / secs / 1e3:.0f}k rows/s ({chars / secs / 1e6:.2f}M chars/s)")


if __name__ == "__main__":
    main()
