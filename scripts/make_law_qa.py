"""Build a small domain instruction set (KoAlpaca layout) from the Constitution in examples/data/ko-gov-sample.

Each article 제N조 gives two records: "what does article N say" (output: the article's text) and "which article is
this" (input: the text, output: its number). Laws are not protected works (저작권법 제7조), so the set is free to
redistribute. Used by the smoke recipe's `sft_domain` stage.

    python scripts/make_law_qa.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "examples" / "data" / "ko-gov-sample" / "kolaw_constitution.txt"
OUT = ROOT / "examples" / "data" / "ko-law-qa" / "constitution_qa.jsonl"
ARTICLE = re.compile(r"^\s*제(\d+)조(?:의(\d+))?\s+(.*)$")
HEADING = re.compile(r"^\s*(제\d+장|제\d+절|부칙)")


def articles(text: str) -> list[tuple[str, str]]:
    """(number, text) per article of the main text, paragraphs (①②...) joined with newlines; headings dropped."""
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if "부칙" in line and not ARTICLE.match(line):  # the supplementary provisions number their articles from 1 again
            break
        m = ARTICLE.match(line)
        if m:
            number = m.group(1) + (f"조의{m.group(2)}" if m.group(2) else "조")
            found.append((number, [m.group(3).strip()]))
        elif found and line.strip() and not HEADING.match(line):
            found[-1][1].append(line.strip())
        elif HEADING.match(line) and found:
            found.append(("", []))  # ends the article before the heading
    return [(n, "\n".join(body)) for n, body in found if n and body]


def main() -> None:
    rows = []
    for number, body in articles(SOURCE.read_text(encoding="utf-8")):
        rows.append({"instruction": f"대한민국헌법 제{number}는 무엇을 규정하고 있나요?", "input": "",
                     "output": f"대한민국헌법 제{number}는 다음과 같습니다.\n{body}"})
        rows.append({"instruction": "다음 조문은 대한민국헌법의 몇 조인가요?", "input": body,
                     "output": f"대한민국헌법 제{number}입니다."})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        for i, r in enumerate(rows):
            f.write(json.dumps({"id": f"constitution-qa-{i}", **r}, ensure_ascii=False) + "\n")
    print(f"{OUT}: {len(rows)} records from {len(rows) // 2} articles")


if __name__ == "__main__":
    main()
