"""Generate a reply from a trained model folder through its chat template (offline).

    python scripts/chat.py runs/smoke/dpo/final "질문" [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    if not os.path.isdir(args.model_dir):
        sys.exit(f"{args.model_dir}: no such model folder (run the pipeline first)")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir)
    model.eval()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": args.prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=args.max_new_tokens, do_sample=False)
    reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"user: {args.prompt}\nassistant: {reply}")


if __name__ == "__main__":
    main()
