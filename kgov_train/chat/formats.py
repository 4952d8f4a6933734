"""Converters from the layouts chat data comes in to the `messages` form TRL trains on.

SFT (`format` of a dataset in `sft.datasets`):
    messages    {"messages": [{"role", "content"}, ...]}, taken as is (only role and content are kept)
    alpaca      KoAlpaca / Alpaca {"instruction", "input", "output"}: one user turn (the instruction, and the input
                after a blank line when it is not blank) and one assistant turn (the output)
    qa          question/answer columns: the dataset's question_key/answer_key, else the first present of
                question, Q, 질문, instruction and of answer, A, 답변, output
    auto        per record: messages if it has `messages`, else alpaca if it has `instruction` and `output`, else qa
                if a question or an answer column is found (missing_question / missing_answer when the other is
                not), else rejected (`unknown_format`)
DPO:
    preference  {"prompt", "chosen", "rejected"}, conversational (message lists) or plain strings: a prompt string is
                one user turn, a chosen/rejected string one assistant turn. Without `prompt`, the prompt is the turns
                chosen and rejected share, up to the last shared user turn (TRL's implicit prompt).
    auto        preference

A converter does not judge the messages it builds (kgov_train.chat.checks does); it rejects only what it cannot place:
unknown_format, missing_instruction, missing_output, missing_question, missing_answer, field_not_text.
"""

from __future__ import annotations

from typing import Any

SFT_FORMATS = ("auto", "messages", "alpaca", "qa")
DPO_FORMATS = ("auto", "preference")
QUESTION_KEYS = ("question", "Q", "질문", "instruction")
ANSWER_KEYS = ("answer", "A", "답변", "output")


def formats(kind: str) -> tuple[str, ...]:
    return SFT_FORMATS if kind == "sft" else DPO_FORMATS


class Unplaced(Exception):
    """A record the converter cannot turn into messages; args[0] is the reason."""


def _text(rec: dict, key: str, missing: str) -> str:
    value = rec.get(key)
    if value is None:
        raise Unplaced(missing)
    if not isinstance(value, str):
        raise Unplaced("field_not_text")
    return value


def _pair(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def from_alpaca(rec: dict) -> dict:
    instruction = _text(rec, "instruction", "missing_instruction")
    output = _text(rec, "output", "missing_output")
    extra = rec.get("input")
    if extra is not None and not isinstance(extra, str):
        raise Unplaced("field_not_text")
    user = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    return {"messages": _pair(user, output)}


def qa_keys(rec: dict, question_key: str | None = None, answer_key: str | None = None) -> tuple[str | None, str | None]:
    """The question and answer columns of a record: the given keys, else the first present of the defaults."""
    q = question_key or next((k for k in QUESTION_KEYS if rec.get(k) is not None), None)
    a = answer_key or next((k for k in ANSWER_KEYS if rec.get(k) is not None), None)
    return q, a


def from_qa(rec: dict, question_key: str | None = None, answer_key: str | None = None) -> dict:
    q, a = qa_keys(rec, question_key, answer_key)
    if q is None:
        raise Unplaced("missing_question")
    if a is None:
        raise Unplaced("missing_answer")
    return {"messages": _pair(_text(rec, q, "missing_question"), _text(rec, a, "missing_answer"))}


def detect_sft(rec: dict, question_key: str | None = None, answer_key: str | None = None) -> str | None:
    """The layout `auto` reads a record as: messages, alpaca, qa, or None."""
    if "messages" in rec:
        return "messages"
    if rec.get("instruction") is not None and rec.get("output") is not None:
        return "alpaca"
    q, a = qa_keys(rec, question_key, answer_key)
    if rec.get(q) is not None or rec.get(a) is not None:  # one column is enough to say what is missing
        return "qa"
    return None


def _as_turns(value: Any, role: str) -> Any:
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def from_preference(rec: dict) -> dict:
    chosen = _as_turns(rec.get("chosen"), "assistant")
    rejected = _as_turns(rec.get("rejected"), "assistant")
    if "prompt" in rec:
        return {"prompt": _as_turns(rec["prompt"], "user"), "chosen": chosen, "rejected": rejected}
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        return {"prompt": None, "chosen": chosen, "rejected": rejected}
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    while shared and not (isinstance(chosen[shared - 1], dict) and chosen[shared - 1].get("role") == "user"):
        shared -= 1
    return {"prompt": chosen[:shared] or None, "chosen": chosen[shared:], "rejected": rejected[shared:]}


def convert(rec: Any, kind: str, fmt: str = "auto", question_key: str | None = None,
            answer_key: str | None = None) -> tuple[dict | None, str]:
    """(record in messages form, the layout used) or (None, the reason it was rejected).

    The record still has to pass kgov_train.chat.checks: a `messages` record is passed through unchecked."""
    if not isinstance(rec, dict):
        return None, "not_an_object"
    try:
        if kind == "dpo":
            return from_preference(rec), "preference"
        layout = detect_sft(rec, question_key, answer_key) if fmt == "auto" else fmt
        if layout is None:
            return None, "unknown_format"
        if layout == "messages":
            return {"messages": rec.get("messages")}, layout
        if layout == "alpaca":
            return from_alpaca(rec), layout
        if layout == "qa":
            return from_qa(rec, question_key, answer_key), layout
        raise ValueError(f"unknown SFT format '{fmt}'; one of {', '.join(SFT_FORMATS)}")
    except Unplaced as e:
        return None, e.args[0]


def add_system_prompt(rec: dict, kind: str, system_prompt: str | None) -> dict:
    """The system prompt as the first turn of a record that has no system turn (a checked, cleaned record)."""
    if not system_prompt:
        return rec
    key = "messages" if kind == "sft" else "prompt"
    if rec[key][0]["role"] == "system":
        return rec
    return {**rec, key: [{"role": "system", "content": system_prompt}, *rec[key]]}
