"""The cheap checks of a base model folder, torch-free (a recipe check runs them): a local folder, not a hub id; a
config.json without remote code (unless trusted); a tokenizer; safetensors weights (pickle checkpoints only when
allowed) whose headers agree with the files' sizes; a licence. Every problem is one line naming the file and the
recipe key; all of them are collected before any weight is hashed."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgov_train.errors import RecipeError
from kgov_train.foundation.bundle import carried
from kgov_train.foundation.hashing import folder_files
from kgov_train.foundation.license import license_problems
from kgov_train.foundation.weights import Tensor, read_tensors, weight_files

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


class BaseImportError(RecipeError):
    """The base model folder cannot be trusted; `problems` lists every reason, one line each, naming the key."""

    def __init__(self, problems: list[str]):
        self.problems = list(dict.fromkeys(problems))
        super().__init__("base model refused:\n  " + "\n  ".join(self.problems))


@dataclass
class Folder:
    """What the cheap checks learnt of the folder; `problems` empty when it is sound."""

    path: Path
    files: list[Path] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    safetensors: list[Path] = field(default_factory=list)
    pickles: list[Path] = field(default_factory=list)
    tensors: dict[str, Tensor] = field(default_factory=dict)
    remote_code: dict[str, Any] | None = None  # auto_map of config.json / tokenizer_config.json
    bundle: Any = None  # the kgov_train.carry bundle entry the folder lies in, if any
    problems: list[str] = field(default_factory=list)


def local_folder(path: str | Path | None) -> Path | None:
    """The path as an absolute local path (None for an empty value); relative paths are to the working folder."""
    if path is None or not str(path).strip():
        return None
    return Path(str(path)).expanduser().absolute()


def path_problem(path: str | Path | None, key: str = "base") -> str | None:
    """Why `path` is not a local model folder, None when it is one."""
    if path is None or not str(path).strip():
        return f"{key}.path: empty; give the local folder of the base model (config.json, tokenizer, *.safetensors)"
    text = str(path)
    folder = local_folder(text)
    if folder.is_dir():
        return None
    if folder.exists():
        return f"{key}.path: {folder} is a file; give the model's folder"
    if _URL.match(text) or (_HUB_ID.match(text) and not text.startswith(".")):
        return (f"{key}.path: '{text}' is not a local folder (a hub id or URL?); only local folders are accepted, "
                "nothing is downloaded: copy the model into a folder on this machine and give its path")
    return f"{key}.path: {folder} does not exist; only local folders are accepted"


def _remote_code(folder: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    if config.get("auto_map"):
        found["config.json"] = config["auto_map"]
    tok = folder / "tokenizer_config.json"
    if tok.is_file():
        try:
            tok_map = json.loads(tok.read_text(encoding="utf-8")).get("auto_map")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            tok_map = None
        if tok_map:
            found["tokenizer_config.json"] = tok_map
    return found or None


def inspect_folder(path: str | Path | None, *, name: str | None, license: str | None, allow_pickle: bool = False,
                   trust_remote_code: bool = False, allow_unknown_license: bool = False,
                   key: str = "base") -> Folder:
    """Every cheap check of a base model folder; reads the small files and the safetensors headers only."""
    problems: list[str] = []
    if name is None or not str(name).strip():
        problems.append(f"{key}.name: empty; name the base model (e.g. Llama-3.2-1B), as the model card will")
    problems += license_problems(license, allow_unknown_license, key)
    problem = path_problem(path, key)
    if problem:
        return Folder(Path(str(path or "")), problems=problems + [problem])
    folder = local_folder(path)
    assert folder is not None
    out = Folder(folder, files=folder_files(folder))
    out.bundle, bundle_problems = carried(folder, key)  # carried in a bundle: as its assets.json lists (sizes)
    problems += bundle_problems
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        problems.append(f"{key}.path: {cfg_path} is missing; not a Hugging Face model folder")
    else:
        try:
            out.config = json.loads(cfg_path.read_text(encoding="utf-8"))
            if not isinstance(out.config, dict):
                raise ValueError("not a JSON object")
        except (UnicodeDecodeError, ValueError) as e:
            problems.append(f"{key}.path: {cfg_path} is not valid JSON ({e})")
            out.config = {}
    out.remote_code = _remote_code(folder, out.config)
    if out.remote_code and not trust_remote_code:
        for where, auto_map in out.remote_code.items():
            classes = ", ".join(f"{k}={v}" for k, v in auto_map.items()) if isinstance(auto_map, dict) else auto_map
            problems.append(f"{key}.path: {folder / where} has auto_map ({classes}): loading it runs the model's "
                            f"own Python code; review that code, then set {key}.trust_remote_code=true")
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        problems.append(f"{key}.path: {folder} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); copy the "
                        "base model's tokenizer files into the folder")
    out.safetensors, out.pickles, weight_problems = weight_files(folder, out.files)
    problems += [f"{key}.path: {p}" for p in weight_problems]
    if not allow_pickle:
        problems += [f"{key}.path: {f} is a pickle checkpoint (loading it can run code); convert it to safetensors "
                     f"or remove it, or set {key}.allow_pickle=true" for f in out.pickles]
    if not out.safetensors and not out.pickles and not weight_problems:
        problems.append(f"{key}.path: {folder} has no weights (*.safetensors)")
    out.tensors, header_problems = read_tensors(folder, out.safetensors)
    problems += [f"{key}.path: {p}" for p in header_problems]
    out.problems = problems
    return out


def base_problems(path: str | Path | None, *, name: str | None, license: str | None, allow_pickle: bool = False,
                  trust_remote_code: bool = False, allow_unknown_license: bool = False,
                  key: str = "base") -> list[str]:
    """The recipe-time checks of a base model (torch-free, no hashing): what is wrong, one line each."""
    return inspect_folder(path, name=name, license=license, allow_pickle=allow_pickle,
                          trust_remote_code=trust_remote_code, allow_unknown_license=allow_unknown_license,
                          key=key).problems
