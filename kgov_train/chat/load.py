"""The entry point: an SFT or DPO stage's section -> training and validation records, stats and a rejects file.

    read every file of every dataset (kgov_train.chat.readers)
      -> convert to messages (formats) -> check (checks) -> add the system prompt
      -> validation split by prompt hash, then caps (mixture)
      -> token lengths and max_length (lengths; only with a tokenizer)
      -> weighted mixture of the training records (mixture)
Rejected records are counted per dataset and reason and written to <stage_dir>/rejects/rejected.jsonl (rejects).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgov_train.chat import lengths as L
from kgov_train.chat import mixture as MX
from kgov_train.chat.checks import check_record, clean_record
from kgov_train.chat.errors import ChatDataError
from kgov_train.chat.formats import add_system_prompt, convert
from kgov_train.chat.readers import Unreadable, read_records
from kgov_train.chat.rejects import Rejects
from kgov_train.chat.specs import DatasetSpec, dataset_specs

log = logging.getLogger("kgov_train")

_COUNTS = ("read", "valid", "rejected", "validation", "capped", "truncated", "dropped", "records", "train")


@dataclass
class ChatData:
    """Records in the form TRL wants ({"messages"} for SFT, {"prompt", "chosen", "rejected"} for DPO)."""

    train: list[dict]
    validation: list[dict]
    stats: dict[str, Any]  # JSON-able: per dataset and totals (see load_chat_data)
    rejects_path: Path
    datasets: list[DatasetSpec] = field(default_factory=list)


def load_chat_data(section: Any, kind: str, key: str, stage_dir: Path, seed: int, tokenizer=None) -> ChatData:
    """Load, check, split and mix the datasets of `section` (cfg.sft, a named SFT stage's section, or cfg.dpo).

    kind: "sft" or "dpo". key: the section's dotted key, for messages ("sft", "sft_stages.sft_domain", "dpo").
    tokenizer: a tokenizer with a chat template; with it, section.max_length and section.overlong are applied
    (truncated/dropped counts), without it no length is measured (truncated/dropped are null).

    stats = {"kind", "seed", "max_length", "overlong", "validation_fraction", "max_validation_records",
             "rejects_file", "datasets": {name: {key, format, license, weight, max_records, files, read, formats,
             valid, rejected, rejected_by_reason, validation, capped, truncated, dropped, dropped_by_reason,
             records (distinct training records), train (after the mixture, copies included), rate, target_share,
             share}}, "totals": {the counts summed, rejected_by_reason, dropped_by_reason}}
    Raises RecipeError for a recipe problem (both data and datasets, a glob matching nothing, ...) and ChatDataError
    when a dataset has no valid record or no training record is left; the rejects file is written either way.
    """
    specs = dataset_specs(section, kind, key)
    max_length, overlong = int(_get(section, "max_length", 1024)), str(_get(section, "overlong", "truncate"))
    fraction = float(_get(section, "validation_fraction", 0.0))
    max_val = int(_get(section, "max_validation_records", 0))
    stats = {s.name: _dataset_stats(s) for s in specs}

    rejects = Rejects(stage_dir, key)
    try:
        pools = [_read_dataset(s, kind, rejects, stats[s.name]) for s in specs]
        empty = [s for s, pool in zip(specs, pools) if not pool]
        if empty:
            s = empty[0]
            raise ChatDataError(
                f"{s.key}: no valid {kind.upper()} record in {[str(f) for f in s.files]} (format {s.format}; "
                f"rejected: {dict(rejects.by_dataset[s.name])}); each rejected record and its reason is in "
                f"{rejects.path}")

        train_pools, val_pools = MX.split_validation(pools, fraction, max_val)
        for i, s in enumerate(specs):
            uncapped = train_pools[i]
            train_pools[i] = MX.cap(uncapped, s.max_records, seed)
            stats[s.name]["capped"] = len(uncapped) - len(train_pools[i])
        if tokenizer is not None:
            for i, s in enumerate(specs):
                train_pools[i], val_pools[i] = _apply_lengths(
                    s, kind, tokenizer, max_length, overlong, train_pools[i], val_pools[i], rejects, stats[s.name])
        else:
            for s in specs:
                stats[s.name]["truncated"] = stats[s.name]["dropped"] = None
    finally:
        rejects.close()

    schedule, counts = MX.mix(train_pools, [s.weight for s in specs], seed)
    if not schedule:
        raise ChatDataError(
            f"{key}: no {kind.upper()} training record left from "
            f"{[str(f) for s in specs for f in s.files]} ("
            + "; ".join(f"{s.name}: valid {stats[s.name]['valid']}, validation {len(v)}, dropped "
                        f"{stats[s.name]['dropped']}" for s, v in zip(specs, val_pools))
            + f"); see {rejects.path}")
    total = len(schedule)
    w_total = sum(s.weight for s, p in zip(specs, train_pools) if p)
    for s, pool, val, count in zip(specs, train_pools, val_pools, counts):
        st = stats[s.name]
        st.update(validation=len(val), records=len(pool), train=count,
                  rate=round(count / len(pool), 6) if pool else None,
                  target_share=round(s.weight / w_total, 6) if pool else 0.0, share=round(count / total, 6))
        if not pool:
            log.warning("%s: dataset '%s' (%s) has no training record left (validation %d, dropped %s); the other "
                        "datasets share the mixture", key, s.name, s.key, len(val), st["dropped"])
        elif st["rate"] >= MX.MANY_REPEATS:
            log.warning("%s: dataset '%s' is repeated %.1fx to reach its weight's share (%.1f%% of %d records); lower "
                        "%s.weight or cap the others if that is not meant", key, s.name, st["rate"],
                        100 * st["target_share"], total, s.key)
    validation = [it.record for pool in val_pools for it in pool]
    out = {"kind": kind, "seed": seed, "max_length": max_length if tokenizer is not None else None,
           "overlong": overlong, "validation_fraction": fraction, "max_validation_records": max_val,
           "rejects_file": str(rejects.path), "datasets": stats, "totals": _totals(stats)}
    _log_summary(key, out)
    return ChatData([it.record for it in schedule], validation, out, rejects.path, specs)


def _get(node: Any, name: str, default: Any) -> Any:
    value = node.get(name, default) if hasattr(node, "get") else getattr(node, name, default)
    return default if value is None else value


def _dataset_stats(s: DatasetSpec) -> dict[str, Any]:
    return {"key": s.key, "format": s.format, "license": s.license, "weight": s.weight, "max_records": s.max_records,
            "files": [str(f) for f in s.files], "read": 0, "formats": {}, "valid": 0, "rejected": 0,
            "rejected_by_reason": {}, "validation": 0, "capped": 0, "truncated": 0, "dropped": 0,
            "dropped_by_reason": {}, "records": 0, "train": 0, "rate": None, "target_share": 0.0, "share": 0.0}


def _read_dataset(s: DatasetSpec, kind: str, rejects: Rejects, st: dict) -> list[MX.Item]:
    pool: list[MX.Item] = []
    layouts: Counter[str] = Counter()
    for path in s.files:
        for origin, rec in read_records(path, s.name, s.inputs_key):
            st["read"] += 1
            if isinstance(rec, Unreadable):
                rejects.add(origin, rec.reason, raw=rec.raw, detail=rec.detail)
                continue
            converted, layout = convert(rec, kind, s.format, s.question_key, s.answer_key)
            why = layout if converted is None else check_record(converted, kind)
            if why:
                rejects.add(origin, why, record=rec)
                continue
            layouts[layout] += 1
            clean = clean_record(converted, kind)
            pool.append(MX.Item.make(add_system_prompt(clean, kind, s.system_prompt), origin, kind, clean))
    reasons = rejects.by_dataset.get(s.name, Counter())
    st.update(valid=len(pool), formats=dict(layouts), rejected=sum(reasons.values()),
              rejected_by_reason=dict(sorted(reasons.items())))
    return pool


def _apply_lengths(s: DatasetSpec, kind: str, tokenizer, max_length: int, overlong: str, train: list[MX.Item],
                   val: list[MX.Item], rejects: Rejects, st: dict) -> tuple[list[MX.Item], list[MX.Item]]:
    items = train + val
    decision = L.apply_max_length([it.record for it in items], kind, tokenizer, max_length, overlong)
    dropped: Counter[str] = Counter()
    for i, reason, prompt, total in decision.dropped:
        it = items[i]
        rejects.add(it.origin, reason, record=it.record, tokens=total, prompt_tokens=prompt, max_length=max_length)
        dropped[reason] += 1
    kept = set(decision.kept)
    st.update(truncated=decision.truncated, dropped=sum(dropped.values()),
              dropped_by_reason=dict(sorted(dropped.items())))
    return ([it for i, it in enumerate(train) if i in kept],
            [it for i, it in enumerate(val, len(train)) if i in kept])


def _totals(stats: dict[str, dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in _COUNTS:
        values = [st[k] for st in stats.values()]
        out[k] = None if any(v is None for v in values) else sum(values)
    for k in ("rejected_by_reason", "dropped_by_reason"):
        c: Counter[str] = Counter()
        for st in stats.values():
            c.update(st[k])
        out[k] = dict(sorted(c.items()))
    return out


def _log_summary(key: str, stats: dict) -> None:
    for name, st in stats["datasets"].items():
        log.info("%s: dataset '%s': read %d, valid %d, rejected %d%s, validation %d, capped %d, truncated %s, "
                 "dropped %s, train %d (%d records x %s, share %.3f)", key, name, st["read"], st["valid"],
                 st["rejected"], f" {st['rejected_by_reason']}" if st["rejected"] else "", st["validation"],
                 st["capped"], st["truncated"],
                 st["dropped"], st["train"], st["records"], st["rate"], st["share"])
    t = stats["totals"]
    if t["rejected"]:
        log.warning("%s: %d record(s) rejected %s; all of them are in %s", key, t["rejected"],
                    t["rejected_by_reason"], stats["rejects_file"])
