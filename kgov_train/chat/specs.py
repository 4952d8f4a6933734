"""The datasets of an SFT or DPO stage's section, checked and with their files resolved.

`<key>.datasets` is the full form (name, inputs, format, weight, max_records, license, question_key, answer_key,
system_prompt); `<key>.data` (a list of files or globs) is the shorthand for one dataset named `data`, format auto.
Every problem raises RecipeError naming the key to fix (`sft.datasets[1].inputs`, `sft_stages.sft_domain.data`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgov_train.chat.formats import formats
from kgov_train.chat.readers import file_type
from kgov_train.config.inputs import resolve_globs
from kgov_train.errors import RecipeError

SHORTHAND = "data"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    key: str  # where its settings live: "sft.datasets[0]" or, for the shorthand, "sft.data"
    inputs_key: str  # "sft.datasets[0].inputs" or "sft.data"
    files: tuple[Path, ...]
    format: str = "auto"
    weight: float = 1.0
    max_records: int | None = None
    license: str = "unknown"
    question_key: str | None = None
    answer_key: str | None = None
    system_prompt: str | None = None  # the dataset's, else the section's; "" or null: none


@dataclass(frozen=True)
class InputFile:
    """One input file of a stage, for the manifest and the bill of materials."""

    path: Path
    dataset: str
    license: str
    key: str  # the recipe key that lists it


def _get(node: Any, name: str, default: Any = None) -> Any:
    value = node.get(name, default) if hasattr(node, "get") else getattr(node, name, default)
    return default if value is None and default is not None else value


def _list(value: Any) -> list:
    return [] if value is None else [str(v) for v in value]


def dataset_specs(section: Any, kind: str, key: str) -> list[DatasetSpec]:
    """The section's datasets with their files (globs resolved, in order), checked; RecipeError otherwise."""
    if kind not in ("sft", "dpo"):
        raise ValueError(f"kind: 'sft' or 'dpo', got '{kind}'")
    data, datasets = _list(_get(section, "data")), list(_get(section, "datasets") or [])
    if data and datasets:
        raise RecipeError(f"{key}.data: set either {key}.datasets or {key}.data (one-dataset shorthand), not both")
    if not data and not datasets:
        raise RecipeError(f"{key}.datasets: empty; list the {kind.upper()} datasets (or {key}.data: files)")
    stage_prompt = _get(section, "system_prompt")
    if data:
        files = resolve_globs(data, f"{key}.data")
        _check_types(files, f"{key}.data", RecipeError)
        return [DatasetSpec(SHORTHAND, f"{key}.data", f"{key}.data", tuple(files), system_prompt=stage_prompt)]

    specs, owner = [], {}
    allowed = formats(kind)
    for i, d in enumerate(datasets):
        k = f"{key}.datasets[{i}]"
        name = _get(d, "name")
        if not isinstance(name, str) or not name.strip():
            raise RecipeError(f"{k}.name: give the dataset a name")
        if name in {s.name for s in specs}:
            raise RecipeError(f"{k}.name: '{name}' names two datasets")
        fmt = str(_get(d, "format", "auto"))
        if fmt not in allowed:
            raise RecipeError(f"{k}.format: one of {', '.join(allowed)} for {kind.upper()}, got '{fmt}'")
        weight = float(_get(d, "weight", 1.0))
        if not weight > 0:
            raise RecipeError(f"{k}.weight: must be > 0, got {weight}")
        max_records = _get(d, "max_records")
        if max_records is not None and int(max_records) < 1:
            raise RecipeError(f"{k}.max_records: null (all) or >= 1, got {max_records}")
        inputs = _list(_get(d, "inputs"))
        if not inputs:
            raise RecipeError(f"{k}.inputs: empty; list the dataset's files or globs")
        files = resolve_globs(inputs, f"{k}.inputs")
        _check_types(files, f"{k}.inputs", RecipeError)
        for f in files:
            if f in owner:
                raise RecipeError(f"{k}.inputs: {f} also belongs to dataset '{owner[f]}'")
            owner[f] = name
        own_prompt = _get(d, "system_prompt")
        specs.append(DatasetSpec(
            name=name, key=k, inputs_key=f"{k}.inputs", files=tuple(files), format=fmt, weight=weight,
            max_records=None if max_records is None else int(max_records),
            license=str(_get(d, "license", "unknown")), question_key=_get(d, "question_key"),
            answer_key=_get(d, "answer_key"), system_prompt=stage_prompt if own_prompt is None else own_prompt))
    return specs


def _check_types(files: list[Path], key: str, error: type[Exception]) -> None:
    for f in files:
        if file_type(f) is None:
            raise error(f"{key}: {f} is not a .jsonl, .json, .parquet, .csv or .tsv file (all but parquet may be gzipped)")


def input_files(section: Any, kind: str, key: str) -> list[InputFile]:
    """Every input file of the stage with its dataset and licence (for external_inputs, the manifest and the BOM)."""
    return [InputFile(f, s.name, s.license, s.inputs_key) for s in dataset_specs(section, kind, key) for f in s.files]
