"""verify_base: a local foundation model folder checked before anything trusts it, and the report of what it is.

Order: the cheap checks (kgov_train.foundation.folder: the folder, config.json, remote code, tokenizer files,
weight formats, safetensors headers, licence), all problems raised together; then the checks that need transformers
(kgov_train.foundation.model: config and tokenizer loaded, the model built on the meta device against the weights'
shapes), raised together; only then is every file hashed (streamed). No weight is ever loaded.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kgov_train.foundation.bundle import bundle_record
from kgov_train.foundation.folder import BaseImportError, inspect_folder
from kgov_train.foundation.hashing import hash_files
from kgov_train.foundation.license import license_file, license_warnings, readme_license
from kgov_train.foundation.model import inspect_model, pickle_tensors
from kgov_train.foundation.weights import dtype_elements

FORMAT = "kgov-base/1"


@dataclass
class BaseReport:
    """What the base model is, as verified; written to <run_dir>/base/base.json. Nothing in it depends on when or
    how fast it ran, so an unchanged folder gives the same file."""

    name: str
    path: str
    license: str | None
    license_file: dict[str, Any] | None  # {path, sha256, first_line}
    readme_license: str | None  # README.md front matter `license:`
    architecture: str | None  # config.architectures[0]
    model_type: str | None
    parameters: int  # the model's own count (tied weights once)
    tensors: int  # tensors in the weight files
    dtype: str | None  # the weights' dtype (most elements), torch's name
    dtypes: dict[str, int]  # elements per dtype
    config_dtype: str | None
    weight_format: str  # safetensors | pickle
    weight_files: list[str]
    sharded: bool
    tied_embeddings: bool
    vocab_size: int | None  # config.json
    embedding_rows: int
    tokenizer_size: int | None  # len(tokenizer), added tokens included
    tokenizer_class: str | None
    chat_template: bool
    special_tokens: dict[str, dict[str, Any] | None]  # bos/eos/pad/unk: {token, id} or None
    allow_pickle: bool
    pickle_files: list[str]
    trust_remote_code: bool
    remote_code: dict[str, Any] | None  # the auto_map entries that were trusted
    allow_unknown_license: bool
    unexpected_weights: list[str]  # tensors no model parameter uses
    warnings: list[str]
    files: list[dict[str, Any]]  # every file of the folder: {path, sha256, bytes}
    total_bytes: int
    bundle: dict[str, Any] | None = None  # the air-gap bundle entry it was carried in (kgov_train.carry), verified
    format: str = FORMAT
    timings: dict[str, float] = field(default_factory=dict, repr=False)  # not written: see to_json

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("timings")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def metrics(self) -> dict[str, Any]:
        """The stage's metrics: the headline facts and how long each part took."""
        return {"name": self.name, "architecture": self.architecture, "model_type": self.model_type,
                "parameters": self.parameters, "dtype": self.dtype, "vocab_size": self.vocab_size,
                "tokenizer_size": self.tokenizer_size, "license": self.license, "files": len(self.files),
                "bytes": self.total_bytes, "warnings": len(self.warnings),
                **({"bundle": self.bundle} if self.bundle else {}), **self.timings}


def verify_base(path: str | Path, *, name: str | None, license: str | None, allow_pickle: bool = False,
                trust_remote_code: bool = False, allow_unknown_license: bool = False, progress: bool = True,
                known_hashes: dict[str, str] | None = None, key: str = "base") -> BaseReport:
    """Check the folder and describe it; raises BaseImportError listing every problem (one line each, naming the
    file and `<key>.<option>`). `known_hashes` (absolute path -> sha256) spares files hashed already, e.g. by the
    pipeline for the stage's manifest."""
    t0 = time.perf_counter()
    folder = inspect_folder(path, name=name, license=license, allow_pickle=allow_pickle,
                            trust_remote_code=trust_remote_code, allow_unknown_license=allow_unknown_license, key=key)
    if folder.problems:
        raise BaseImportError(folder.problems)
    warnings: list[str] = []
    tensors, fmt = folder.tensors, "safetensors"
    if not folder.safetensors:  # only pickles, allowed
        tensors, notes = pickle_tensors(folder.path, folder.pickles)
        warnings += [f"{key}.path: {n}" for n in notes]
        fmt = "pickle"
        if not tensors:
            raise BaseImportError([f"{key}.path: {folder.path}: no pickle file holds a state dict of tensors"])
    t1 = time.perf_counter()
    facts, problems = inspect_model(folder.path, tensors, trust_remote_code, key)
    if problems:
        raise BaseImportError(problems)
    t2 = time.perf_counter()
    files = hash_files(folder.path, folder.files, known=known_hashes, progress=progress)
    bundle, problems = bundle_record(folder.path, files, key) if folder.bundle is not None else (None, [])
    if problems:  # a file not as the bundle's assets.json lists it
        raise BaseImportError(problems)
    t3 = time.perf_counter()
    readme, lic = readme_license(folder.path), license_file(folder.path)
    warnings += license_warnings(folder.path, license, readme, lic is not None, key)
    if facts["unexpected_weights"]:
        u = facts["unexpected_weights"]
        warnings.append(f"{key}.path: {len(u)} tensor(s) in the weights that the model does not use (first: {u[0]})")
    vocab, size = facts.get("vocab_size"), facts.get("tokenizer_size")
    if size is not None and vocab is not None and size != vocab:  # larger was refused above
        warnings.append(f"{key}.path: the tokenizer has {size} tokens, config.json's vocab_size is {vocab} (the "
                        f"last {vocab - size} embedding rows are never produced)")
    dtypes = dtype_elements(tensors)
    weights = folder.safetensors or sorted({folder.path / t.file for t in tensors.values()})
    return BaseReport(
        name=str(name), path=str(folder.path), license=None if license is None else str(license),
        license_file=lic, readme_license=readme, architecture=facts.get("architecture"),
        model_type=facts.get("model_type"), parameters=int(facts["parameters"]), tensors=len(tensors),
        dtype=next(iter(dtypes), None), dtypes=dtypes, config_dtype=facts.get("config_dtype"), weight_format=fmt,
        weight_files=[str(f.relative_to(folder.path)) for f in weights], sharded=len(weights) > 1,
        tied_embeddings=bool(facts["tied_embeddings"]), vocab_size=vocab, embedding_rows=int(facts["embedding_rows"]),
        tokenizer_size=size, tokenizer_class=facts.get("tokenizer_class"),
        chat_template=bool(facts.get("chat_template")), special_tokens=facts.get("special_tokens", {}),
        allow_pickle=allow_pickle, pickle_files=[str(f.relative_to(folder.path)) for f in folder.pickles],
        trust_remote_code=trust_remote_code, remote_code=folder.remote_code if trust_remote_code else None,
        allow_unknown_license=allow_unknown_license, unexpected_weights=facts["unexpected_weights"][:50],
        warnings=warnings, files=files, total_bytes=sum(f["bytes"] for f in files), bundle=bundle,
        timings={"check_seconds": round(t1 - t0, 3), "model_check_seconds": round(t2 - t1, 3),
                 "hash_seconds": round(t3 - t2, 3), "verify_seconds": round(time.perf_counter() - t0, 3)})
