"""Build the smoke SFT and DPO sets from examples/data/ko-chatbot/ChatbotData.csv.

SFT: each Q/A pair becomes a user/assistant conversation.
DPO (dpo.jsonl): each question keeps its own answer as `chosen`; `rejected` is the
answer of another pair with a different label (everyday / negative / positive
feelings), picked deterministically, so the preference is reproducible.
DPO (dpo_helpful.jsonl): the same questions, `rejected` an evasive, dismissive reply
from a fixed pool (what a public-service assistant must not answer); a preference a
tiny model learns within the smoke recipe's steps.

    python scripts/make_chatbot_sets.py [--limit 2000]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

# Dismissive replies written for this set (no source text).
EVASIVE = ("잘 모르겠어요.", "그건 제가 답할 수 없어요.", "다른 곳에 물어보세요.", "글쎄요.", "알아서 하세요.",
           "그런 건 묻지 마세요.", "관심 없어요.", "나중에 다시 물어보세요.")

HERE = Path(__file__).resolve().parents[1] / "examples" / "data" / "ko-chatbot"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", type=Path, default=HERE / "ChatbotData.csv")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--limit", type=int, default=2000, help="pairs to keep (every k-th row, for spread)")
    args = ap.parse_args()

    with open(args.csv, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Q"].strip() and r["A"].strip()]
    step = max(1, len(rows) // args.limit)
    rows = rows[::step][: args.limit]

    with open(args.out / "sft.jsonl", "w", encoding="utf-8") as sft:
        for i, r in enumerate(rows):
            msgs = [{"role": "user", "content": r["Q"].strip()}, {"role": "assistant", "content": r["A"].strip()}]
            sft.write(json.dumps({"id": f"chatbot-{i}", "messages": msgs, "source": "ko-chatbot"}, ensure_ascii=False) + "\n")

    n = len(rows)
    with open(args.out / "dpo.jsonl", "w", encoding="utf-8") as dpo:
        for i, r in enumerate(rows):
            j = next(((i + k) % n for k in range(n // 2, n) if rows[(i + k) % n]["label"] != r["label"]), (i + n // 2) % n)
            rec = {
                "id": f"chatbot-{i}",
                "prompt": [{"role": "user", "content": r["Q"].strip()}],
                "chosen": [{"role": "assistant", "content": r["A"].strip()}],
                "rejected": [{"role": "assistant", "content": rows[j]["A"].strip()}],
                "source": "ko-chatbot",
            }
            dpo.write(json.dumps(rec, ensure_ascii=False) + "\n")
    with open(args.out / "dpo_helpful.jsonl", "w", encoding="utf-8") as dpo:
        for i, r in enumerate(rows):
            rec = {
                "id": f"chatbot-helpful-{i}",
                "prompt": [{"role": "user", "content": r["Q"].strip()}],
                "chosen": [{"role": "assistant", "content": r["A"].strip()}],
                "rejected": [{"role": "assistant", "content": EVASIVE[i % len(EVASIVE)]}],
                "source": "ko-chatbot",
            }
            dpo.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"wrote {n} SFT and {2 * n} DPO records to {args.out}")


if __name__ == "__main__":
    main()
