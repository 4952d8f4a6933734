"""bom.json: the data card / AI bill of materials of one trained model (format "kgov-bom/1").

Everything in it is read from the run folder (stage manifests, the shards index, the data stage's clean/ and
rejected/ records, final/) or from the installed packages; nothing is typed by hand. Field names follow CycloneDX
(components with `type`, `name`, `version`, `hashes: [{alg, content}]`, `properties`) where that costs nothing, but
the file is plain JSON with no CycloneDX dependency or validation.

Schema (top-level keys)::

    format        "kgov-bom/1"
    generated_at  ISO time the papers were written
    model         {stage, run_dir, final_dir, status, recipe_name, base: {kind, path, sha256?, fingerprint?},
                   files: [{path, sha256, bytes}]  (final/ as written before the papers; MODEL_CARD.md and
                   bom.json themselves are not listed)}
    stages        [{stage, status, fingerprint, config_sha256, config, started_at, ended_at, wall_seconds,
                    git_commit, host, outputs: [{path, sha256, bytes}]}]  upstream stages in chain order, then this
                   one (its outputs are final/ as above while it is still running)
    data          {sources: {name: {license, weight, files, docs_in, docs_kept, docs_rejected, chars_kept, pii,
                                    tokens: {train, validation, mixture}}},
                   licenses: {license: {sources, docs_kept, chars_kept}},
                   files: [{path, sha256, bytes, source, license, docs_kept, docs_rejected}]  every input file of
                   the data stage (docs_* are null when per-file counting was skipped for a very large corpus),
                   finetune_files: [{stage, path, sha256, bytes}]  the sft/dpo data files of the chain,
                   decontamination_files: [{path, sha256, bytes, benchmark, file}]  the local benchmark copies the
                   corpus was checked against (data.decontam.benchmarks), not trained on}
    tokenizer     {path, sha256 (of tokenizer.json), vocab_size, model_type, files: [{path, sha256, bytes}]}
    shards        {index_sha256, tokens, train_tokens, validation_tokens, mixture}
    compute       {world_size, device, precision, zero_stage, parameters, tokens_seen, steps, wall_seconds,
                   device_hours, device_hours_unit ("GPU-hours" | "CPU-hours"), flops_per_token, training_flops,
                   training_flops_method}
    software      {packages: {name: version} from the stage manifest, installed: {name: version} from
                   importlib.metadata at writing time, git_commit, python}
    components    CycloneDX-style flat list: every data file, tokenizer file, upstream stage output and final/
                   file as {type: "data"|"file"|"machine-learning-model", name, hashes, properties}
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

FORMAT = "kgov-bom/1"
KEY_PACKAGES = ("torch", "transformers", "trl", "deepspeed", "datatrove", "sentencepiece", "tokenizers", "peft",
                "accelerate")


def installed_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _hashes(sha: str | None) -> list[dict[str, str]]:
    return [{"alg": "SHA-256", "content": sha}] if sha else []


def build_bom(f: dict[str, Any]) -> dict[str, Any]:
    """The bom.json document from the facts gathered by kgov_train.papers.facts.gather()."""
    components: list[dict[str, Any]] = []
    for d in f["data_files"]:
        components.append({"type": "data", "name": d["path"], "hashes": _hashes(d["sha256"]),
                           "properties": [{"name": "kgov:stage", "value": "data"},
                                          {"name": "kgov:source", "value": str(d["source"])},
                                          {"name": "kgov:license", "value": str(d["license"])}]
                           # records name the file by source + this path below the source's root
                           + ([{"name": "kgov:file", "value": d["file"]}] if d.get("file") else [])})
    for d in f["finetune_files"]:
        components.append({"type": "data", "name": d["path"], "hashes": _hashes(d["sha256"]),
                           "properties": [{"name": "kgov:stage", "value": d["stage"]}]})
    for s in f["chain"]:
        if s["stage"] == f["stage"]:
            continue
        for o in s["outputs"]:
            components.append({"type": "file", "name": f"{s['stage']}/{o['path']}", "hashes": _hashes(o["sha256"]),
                               "properties": [{"name": "kgov:stage", "value": s["stage"]}]})
    for o in f["final_files"]:
        components.append({"type": "machine-learning-model" if o["path"].endswith(".safetensors") else "file",
                           "name": f"{f['stage']}/final/{o['path']}", "hashes": _hashes(o["sha256"]),
                           "properties": [{"name": "kgov:stage", "value": f["stage"]}]})
    return {
        "format": FORMAT,
        "generated_at": f["generated_at"],
        "model": {"stage": f["stage"], "run_dir": f["run_dir"], "final_dir": f["final_dir"], "status": f["status"],
                  "recipe_name": f["recipe_name"], "base": f["base"], "files": f["final_files"]},
        "stages": f["chain"],
        "data": {"sources": f["sources"], "licenses": f["licenses"], "files": f["data_files"],
                 "finetune_files": f["finetune_files"], "per_file_counts": f["per_file_counts"],
                 "decontamination_files": f.get("decontamination_files", [])},
        "tokenizer": f["tokenizer"],
        "shards": f["shards"],
        "compute": f["compute"],
        "software": {"packages": f["versions"], "installed": installed_versions(), "git_commit": f["git_commit"],
                     "python": platform.python_version()},
        "evaluation": f["evaluation"],
        "components": components,
    }
