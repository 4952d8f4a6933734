"""Token lengths of chat records under a tokenizer's chat template, and the max_length decision.

The lengths are those TRL trains on: the conversation rendered by `tokenizer.apply_chat_template` and tokenized
(SFT: `messages`; DPO: prompt + chosen and prompt + rejected, the longer counting). The prompt part is the turns
before the first answer rendered with the generation prompt (`<|assistant|>`), i.e. the tokens that come before the
first token the loss sees.

With max_length L (TRL truncates the end, keep_start):
    prompt >= L                       dropped, reason prompt_too_long, whatever `overlong` says: nothing of the
                                      answer would be left to learn (TRL would silently drop it too)
    total > L, overlong=truncate      kept and counted as truncated (TRL cuts it to L tokens)
    total > L, overlong=drop          dropped, reason too_long
Nothing is truncated here. The tokenizer is any object with apply_chat_template (a transformers tokenizer with a
chat template); transformers itself is not imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from kgov_train.chat.errors import ChatDataError

BATCH = 256


def _prompt_turns(rec: dict, kind: str) -> list[dict]:
    if kind == "dpo":
        return rec["prompt"]
    msgs = rec["messages"]
    return msgs[:next(i for i, m in enumerate(msgs) if m["role"] == "assistant")]


def _ids(tokenizer, conversations: list[list[dict]], add_generation_prompt: bool) -> list[list[int]]:
    out = tokenizer.apply_chat_template(conversations, tokenize=True, add_generation_prompt=add_generation_prompt,
                                        return_dict=True)
    return out["input_ids"] if hasattr(out, "keys") else out


def token_lengths(records: Sequence[dict], kind: str, tokenizer) -> list[tuple[int, int]]:
    """(prompt tokens, total tokens) of each record; DPO total: the longer of prompt+chosen and prompt+rejected."""
    if not getattr(tokenizer, "chat_template", None):
        raise ChatDataError("the tokenizer has no chat template: the token lengths of chat records need one "
                            "(the tokenizer stage writes the project's; see tokenizer.chat_template)")
    out: list[tuple[int, int]] = []
    for start in range(0, len(records), BATCH):
        batch = records[start:start + BATCH]
        prompts = _ids(tokenizer, [_prompt_turns(r, kind) for r in batch], add_generation_prompt=True)
        if kind == "dpo":
            chosen = _ids(tokenizer, [r["prompt"] + r["chosen"] for r in batch], add_generation_prompt=False)
            rejected = _ids(tokenizer, [r["prompt"] + r["rejected"] for r in batch], add_generation_prompt=False)
            totals = [max(len(c), len(r)) for c, r in zip(chosen, rejected)]
        else:
            totals = [len(ids) for ids in _ids(tokenizer, [r["messages"] for r in batch], add_generation_prompt=False)]
        out += [(len(p), t) for p, t in zip(prompts, totals)]
    return out


@dataclass
class LengthDecision:
    kept: list[int] = field(default_factory=list)  # indices of the records kept
    truncated: int = 0  # kept records longer than max_length (TRL cuts them)
    dropped: list[tuple[int, str, int, int]] = field(default_factory=list)  # (index, reason, prompt, total tokens)


def decide(lengths: Sequence[tuple[int, int]], max_length: int, overlong: str) -> LengthDecision:
    """Which records stay, which are truncated and which are dropped (see the module docstring)."""
    if overlong not in ("truncate", "drop"):
        raise ValueError(f"overlong: truncate or drop, got '{overlong}'")
    d = LengthDecision()
    for i, (prompt, total) in enumerate(lengths):
        if prompt >= max_length:
            d.dropped.append((i, "prompt_too_long", prompt, total))
        elif total > max_length and overlong == "drop":
            d.dropped.append((i, "too_long", prompt, total))
        else:
            d.kept.append(i)
            d.truncated += total > max_length
    return d


def apply_max_length(records: Sequence[dict], kind: str, tokenizer, max_length: int,
                     overlong: str) -> LengthDecision:
    """token_lengths + decide."""
    return decide(token_lengths(records, kind, tokenizer), max_length, overlong)
