"""Validation of converted records: None when a record is usable, else the reason it is not.

SFT records are `{"messages": [...]}`, DPO records `{"prompt": [...], "chosen": [...], "rejected": [...]}`, every
message a `{"role", "content"}` with role system, user or assistant. The reasons, checked in this order:

    not_an_object            the record is not a JSON object
    no_messages              messages missing, not a list, or empty
    bad_role                 a message that is not an object, or a role other than system/user/assistant
                             (chosen/rejected: other than assistant)
    content_not_text         content is not a string (e.g. null or a list of parts)
    empty_content            content is blank
    system_not_first         a system turn anywhere but first
    no_assistant             (SFT) no assistant turn: nothing to learn
    roles_out_of_order       the first turn after the system turn is not a user turn
    consecutive_same_role    two user or two assistant turns in a row
    last_turn_not_assistant  (SFT) the conversation ends with an unanswered user turn
    prompt_not_ending_with_user  (DPO) the prompt's last turn is not the user's
    chosen_equals_rejected   (DPO) the two answers are the same text: no preference to learn

DPO reasons about a part carry its name: prompt_no_messages, chosen_bad_role, rejected_empty_content, ...
"""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant")


def message_problem(msgs: Any, allowed: tuple[str, ...] = ROLES) -> str | None:
    """Structure of one list of messages: no_messages, bad_role, content_not_text, empty_content, system_not_first."""
    if not isinstance(msgs, list) or not msgs:
        return "no_messages"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in allowed:
            return "bad_role"
        if not isinstance(m.get("content"), str):
            return "content_not_text"
        if not m["content"].strip():
            return "empty_content"
        if m["role"] == "system" and i != 0:
            return "system_not_first"
    return None


def order_problem(msgs: list[dict]) -> str | None:
    """Turn order after an optional system turn: user first, then user and assistant alternate."""
    turns = [m["role"] for m in msgs if m["role"] != "system"]
    if turns and turns[0] != "user":
        return "roles_out_of_order"
    if any(a == b for a, b in zip(turns, turns[1:])):
        return "consecutive_same_role"
    return None


def check_sft_record(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return "not_an_object"
    msgs = rec.get("messages")
    why = message_problem(msgs)
    if why:
        return why
    if not any(m["role"] == "assistant" for m in msgs):
        return "no_assistant"
    why = order_problem(msgs)
    if why:
        return why
    if msgs[-1]["role"] != "assistant":
        return "last_turn_not_assistant"
    return None


def check_dpo_record(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return "not_an_object"
    prompt = rec.get("prompt")
    why = message_problem(prompt)
    if why:
        return "prompt_" + why
    if prompt[-1]["role"] != "user":
        return "prompt_not_ending_with_user"
    why = order_problem(prompt)
    if why:
        return "prompt_" + why
    for part in ("chosen", "rejected"):
        msgs = rec.get(part)
        why = message_problem(msgs, allowed=("assistant",))
        if why:
            return f"{part}_{why}"
        if len(msgs) > 1:
            return f"{part}_consecutive_same_role"
    if [m["content"] for m in rec["chosen"]] == [m["content"] for m in rec["rejected"]]:
        return "chosen_equals_rejected"
    return None


def check_record(rec: Any, kind: str) -> str | None:
    return check_sft_record(rec) if kind == "sft" else check_dpo_record(rec)


def clean_messages(msgs: list[dict]) -> list[dict[str, str]]:
    """Only role and content (extra keys such as `name` or parquet's null fields are dropped)."""
    return [{"role": m["role"], "content": m["content"]} for m in msgs]


def clean_record(rec: dict, kind: str) -> dict:
    """The record in the form TRL wants, from a record that passed its check."""
    keys = ("messages",) if kind == "sft" else ("prompt", "chosen", "rejected")
    return {k: clean_messages(rec[k]) for k in keys}
