"""The recipe keys that differ between runs, from the resolved config each stage recorded in its manifest.

Each stage's `config` is flattened into dotted keys (`tokenizer.vocab_size`; a section recorded under a dotted
name, `data.sources`, keeps it; lists are values); the stages of one run are merged. The run folder itself is
normalised out: a string holding the run's own path reads `<run_dir>`, so paths that differ only by it are equal.
A key is compared among the runs that recorded a stage recording it (a run without pretrain has no pretrain keys to
differ); one such run that lacks the key counts as a difference (shown as `(not set)`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RUN_DIR = "<run_dir>"
NOT_SET = "(not set)"


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def normalise(value: Any, run_dir: Path) -> Any:
    """`value` with the run folder's path (as given and resolved) replaced by <run_dir>, in lists too."""
    if isinstance(value, str):
        for form in sorted({str(run_dir), str(run_dir.resolve())}, key=len, reverse=True):
            value = value.replace(form, RUN_DIR)
        return value
    if isinstance(value, list):
        return [normalise(v, run_dir) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v, run_dir) for k, v in value.items()}
    return value


def run_keys(configs: dict[str, dict[str, Any]], run_dir: Path) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """One run's dotted keys -> value, and key -> the stages that recorded it. When two stages of a run recorded
    different values for one key (a stage re-run alone after a change), each gets its own key `key [stage]`."""
    by_key: dict[str, dict[str, Any]] = {}
    for stage, config in configs.items():
        for k, v in flatten(config).items():
            if k != "run_dir":
                by_key.setdefault(k, {})[stage] = normalise(v, run_dir)
    values: dict[str, Any] = {}
    owners: dict[str, set[str]] = {}
    for k, by_stage in by_key.items():
        first, *rest = by_stage.values()
        if all(_same(first, v) for v in rest):
            values[k], owners[k] = first, set(by_stage)
            continue
        for stage, v in by_stage.items():
            values[f"{k} [{stage}]"], owners[f"{k} [{stage}]"] = v, {stage}
    return values, owners


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def differences(runs: dict[str, tuple[dict[str, dict[str, Any]], Path]]) -> dict[str, dict[str, Any]]:
    """{dotted key: {run name: value or NOT_SET}} for the keys whose values differ, sorted by key; a run with none
    of the stages that record the key is left out of its row. runs: {name: (its stage configs, its run folder)}."""
    keyed = {name: run_keys(configs, path) for name, (configs, path) in runs.items()}
    stages_of: dict[str, set[str]] = {}
    for _, owners in keyed.values():
        for k, s in owners.items():
            stages_of.setdefault(k, set()).update(s)
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(stages_of):
        row = {name: values.get(key, NOT_SET) for name, (values, _) in keyed.items()
               if stages_of[key] & set(runs[name][0])}
        first, *rest = row.values()
        if any(not _same(first, v) for v in rest):
            out[key] = row
    return out
