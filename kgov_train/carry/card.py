"""What a folder says of itself: its licence (the card's YAML front matter, else a LICENSE/NOTICE file) and its
kind (model, tokenizer or dataset), read from the files, never from the network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

KINDS = ("model", "tokenizer", "dataset")
UNKNOWN = "unknown"
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt", "merges.txt",
                   "sentencepiece.bpe.model")
MODEL_JSONS = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "added_tokens.json", "vocab.json", "preprocessor_config.json",
               "model.safetensors.index.json", "pytorch_model.bin.index.json", "adapter_config.json",
               "chat_template.json", "trainer_state.json", "training_args.json"}
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".jsonl.gz", ".json.gz", ".csv.gz",
                 ".jsonl.zst", ".txt.gz")
# keys of a dataset card's front matter (huggingface_hub.DatasetCardData) that a model card does not have
DATASET_CARD_KEYS = ("configs", "dataset_info", "task_categories", "task_ids", "size_categories", "source_datasets",
                     "annotations_creators", "language_creators", "multilinguality", "pretty_name",
                     "paperswithcode_id", "train-eval-index")
_LICENSE_PREFIXES = ("LICENSE", "LICENCE", "COPYING", "NOTICE")


def front_matter(folder: Path) -> dict[str, Any] | None:
    """README.md's YAML front matter (between the leading `---` lines), None without one or when not YAML."""
    path = folder / "README.md"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace").lstrip("\ufeff")
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    try:
        meta = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return None
    return meta if isinstance(meta, dict) else None


def licence(folder: Path, files: list[str]) -> tuple[str, str | None]:
    """(licence, where it was read): README.md's `license:` (a list joined with ", "; `other` with its
    `license_name`), else the name of a LICENSE*/NOTICE file at the top, else ("unknown", None)."""
    meta = front_matter(folder) or {}
    value = meta.get("license")
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v not in (None, ""))
    if value not in (None, ""):
        value = str(value)
        if value.lower() == "other" and meta.get("license_name"):
            value = f"other ({meta['license_name']})"
        return value, "README.md"
    tops = sorted(f for f in files if "/" not in f and f.upper().startswith(_LICENSE_PREFIXES))
    if tops:
        return tops[0], "file"
    return UNKNOWN, None


def _config_names_a_model(folder: Path) -> bool:
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(cfg, dict) and bool(cfg.get("architectures") or cfg.get("model_type"))


def detect_kind(folder: Path, files: list[str], repo_type: str | None = None) -> str | None:
    """model (config.json naming architectures/model_type, and weights), tokenizer (tokenizer files, no weights),
    dataset (a dataset repo, a dataset card's front matter, or data files); None when none fits."""
    if repo_type == "dataset":
        return "dataset"
    names = {f.rsplit("/", 1)[-1] for f in files}
    weights = any(f.endswith(WEIGHTS) for f in files)
    if "config.json" in files and weights and _config_names_a_model(folder):
        return "model"
    if not weights and names & set(TOKENIZER_FILES):
        return "tokenizer"
    meta = front_matter(folder) or {}
    if any(k in meta for k in DATASET_CARD_KEYS):
        return "dataset"
    if any(f.endswith(DATA_SUFFIXES) and f.rsplit("/", 1)[-1] not in MODEL_JSONS for f in files):
        return "dataset"
    return None
