"""The items of the Korean benchmarks as plain text, for the data stage's decontamination (data.decontam.benchmarks).

Each row of the split a benchmark task scores is read from the same local copy eval reads (datasets.load_dataset on
the folder, as lm-eval does) and becomes one item: its string fields and lists of strings joined in column order
(question, passage, choices, answer), without lm-eval's prompt template, so a copy of the item in the corpus matches
however it was formatted. Rows that several tasks share (CLIcK's categories filter one file) are written once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from kgov_train.evaluation.benchmarks import BenchmarkError, Plan, said


def item_text(row: dict[str, Any]) -> str:
    parts: list[str] = []
    for value in row.values():
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts += [v for v in value if isinstance(v, str)]
    return "\n".join(p.strip() for p in parts if p and p.strip())


def items(plan: Plan, name: str, seen: set[tuple]) -> Iterator[dict[str, Any]]:
    """{"text", "task", "row"} of every row the benchmark's tasks score, skipping datasets splits in `seen`."""
    from datasets import load_dataset

    for leaf in plan.leaves[name]:
        key = (leaf.dataset_path, leaf.dataset_name, leaf.split)
        if key in seen:
            continue
        seen.add(key)
        try:
            rows = load_dataset(leaf.dataset_path, leaf.dataset_name, split=leaf.split or "test")
        except Exception as e:  # a copy datasets cannot read: name it
            raise BenchmarkError(f"{name}: {leaf.task} reads {leaf.dataset_path} (config {leaf.dataset_name}, split "
                                 f"{leaf.split}): {said(e)}") from e
        for i, row in enumerate(rows):
            text = item_text(row)
            if text:
                yield {"text": text, "task": leaf.task, "row": i}


def write_items(plan: Plan, out_dir: Path, text_key: str = "text") -> dict[str, Path]:
    """<out_dir>/<benchmark>.jsonl per requested benchmark, the item's text under text_key; returns
    {benchmark: file}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files, seen = {}, set()
    for name in plan.names:
        files[name] = out_dir / f"{name}.jsonl"
        with open(files[name], "w", encoding="utf-8") as f:
            for item in items(plan, name, seen):
                item[text_key] = item.pop("text")
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
    return files
