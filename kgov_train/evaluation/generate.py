"""Greedy generations for a fixed prompt set: chat-tuned stages through the tokenizer's chat template, pretrain as
a plain continuation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kgov_train.evaluation.texts import jsonl_records


class PromptsError(ValueError):
    pass


def read_prompts(path: Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise PromptsError(f"{path}: eval.prompts file missing")
    prompts = []
    for n, rec in jsonl_records(path, "prompt", PromptsError):
        if not rec["prompt"].strip():
            raise PromptsError(f"{path}:{n}: a prompt record needs a non-empty string 'prompt'")
        prompts.append({"id": str(rec.get("id", f"p{n:02d}")), "prompt": rec["prompt"]})
    if not prompts:
        raise PromptsError(f"{path}: no prompts")
    return prompts


def generate(model, tokenizer, prompts: list[dict[str, str]], max_new_tokens: int, chat: bool) -> list[dict[str, Any]]:
    import torch

    device = next(model.parameters()).device
    out = []
    for p in prompts:
        if chat:
            batch = tokenizer.apply_chat_template([{"role": "user", "content": p["prompt"]}], add_generation_prompt=True,
                                                  return_tensors="pt", return_dict=True)
        else:
            batch = tokenizer(p["prompt"], return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            ids = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                 else tokenizer.eos_token_id)
        new = ids[0, batch["input_ids"].shape[1]:]
        out.append({"id": p["id"], "prompt": p["prompt"], "mode": "chat" if chat else "plain",
                    "output": tokenizer.decode(new, skip_special_tokens=True).strip().rstrip("\ufffd"),  # cut mid-character
                    "new_tokens": int(len(new))})
    return out
