"""Everything the model card and bom.json say, read from a run folder (no hand-written numbers).

Layout read: <run_dir>/<stage>/manifest.json for every stage of the chain up to the one being described,
<run_dir>/data/{clean,rejected}/*.jsonl[.gz] (per-file document counts), <run_dir>/tokenizer/{tokenizer.json,
report.json}, <run_dir>/shards/index.json, <run_dir>/eval/report.json (optional) and the stage's final/ folder.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from data_prep.hashing import sha256_file
from kgov_train.manifest import git_commit, versions
from kgov_train.run_folder import BASE_REPORT, MANIFEST, NEEDS, TRAINING, is_training, read_json

PAPERS = ("MODEL_CARD.md", "bom.json", "bom.cdx.json")
# Per-file document counts stream data/clean and data/rejected; above this many (compressed) bytes they are skipped.
PER_FILE_COUNT_MAX_BYTES = 4 << 30
_INPUT_SHA = re.compile(rb'"input_sha256":\s*"([0-9a-f]{64})"')


def lineage(run_dir: Path, stage: str) -> list[str]:
    """The stages `stage` was built from, oldest first, as its manifests record them (inputs' from_stage): the
    recipe's chain as it ran, named SFT stages included, without needing the recipe. A manifest that records no
    upstream inputs falls back to the fixed chain's (kgov_train.run_folder.NEEDS)."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        m = read_json(run_dir / name / MANIFEST) or {}
        ups = list(dict.fromkeys(i["from_stage"] for i in m.get("inputs", []) if "from_stage" in i))
        for up in ups or NEEDS.get(name, ()):
            if up not in order and up not in path:
                visit(up, path + (up,))
        if name not in order:
            order.append(name)

    visit(stage, (stage,))
    return order[:-1]


def config_sha256(config: Any) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def file_entries(folder: Path, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    return [{"path": str(p.relative_to(folder)), "sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip]


def _wall_since(started_at: str | None) -> float | None:
    if not started_at:
        return None
    try:
        return round(time.time() - datetime.strptime(started_at, "%Y-%m-%dT%H:%M:%S%z").timestamp(), 2)
    except ValueError:
        return None


def _stage_entry(name: str, m: dict[str, Any]) -> dict[str, Any]:
    return {"stage": name, "status": m.get("status"), "fingerprint": m.get("fingerprint"),
            "config_sha256": config_sha256(m.get("config", {})), "config": m.get("config", {}),
            "started_at": m.get("started_at"), "ended_at": m.get("ended_at"), "wall_seconds": m.get("wall_seconds"),
            "git_commit": m.get("git_commit"), "host": m.get("host"), "outputs": m.get("outputs", [])}


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def _source_patterns(data_cfg: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(name, license, input patterns) per source, from the data stage's recorded config."""
    if data_cfg.get("sources"):
        return [(s.get("name", "?"), s.get("license", "unknown"), list(s.get("inputs", [])))
                for s in data_cfg["sources"]]
    return [(data_cfg.get("source", "default"), data_cfg.get("license", "unknown"), list(data_cfg.get("inputs", [])))]


def _owner(path: str, patterns: list[tuple[str, str, list[str]]]) -> tuple[str | None, str | None]:
    if len(patterns) == 1:
        return patterns[0][0], patterns[0][1]
    for name, lic, pats in patterns:
        for p in pats:
            if path == p or fnmatch(path, p) or fnmatch(path, "*/" + p.lstrip("./")):
                return name, lic
    return None, None


def _count_records(folder: Path, limit: int) -> tuple[dict[str, int], dict[str, tuple[str, str]]] | None:
    """Records per input file sha256 in a data output folder, and each file's (source, license) as recorded."""
    files = sorted(p for p in folder.glob("*.jsonl*") if p.is_file()) if folder.is_dir() else []
    if sum(p.stat().st_size for p in files) > limit:
        return None
    counts: dict[str, int] = {}
    owner: dict[str, tuple[str, str]] = {}
    for p in files:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as fh:
            for line in fh:
                m = _INPUT_SHA.search(line)
                if not m:
                    continue
                sha = m.group(1).decode()
                counts[sha] = counts.get(sha, 0) + 1
                if sha not in owner:
                    meta = json.loads(line).get("metadata", {})
                    owner[sha] = (meta.get("source"), meta.get("license"))
    return counts, owner


def data_facts(run_dir: Path, data_m: dict[str, Any] | None, limit: int = PER_FILE_COUNT_MAX_BYTES) -> dict[str, Any]:
    if data_m is None:
        return {"sources": {}, "licenses": {}, "data_files": [], "per_file_counts": False, "decontamination_files": []}
    metrics = data_m.get("metrics", {})
    data_cfg = data_m.get("config", {}).get("data", {})
    patterns = _source_patterns(data_cfg)
    sources = {k: dict(v) for k, v in (metrics.get("sources") or {}).items()}
    if not sources:  # manifests written before per-source accounting: the one-source shorthand
        name, lic, _ = patterns[0]
        sources = {name: {"license": lic, "docs_in": metrics.get("docs_in"), "docs_kept": metrics.get("docs_kept"),
                          "chars_kept": metrics.get("chars_kept"), "files": metrics.get("files_in")}}
    licenses = metrics.get("licenses") or {}
    if not licenses:
        for name, s in sources.items():
            e = licenses.setdefault(s.get("license", "unknown"), {"sources": [], "docs_kept": 0, "chars_kept": 0})
            e["sources"].append(name)
            e["docs_kept"] += s.get("docs_kept") or 0
            e["chars_kept"] += s.get("chars_kept") or 0
    kept = _count_records(run_dir / "data" / "clean", limit)
    rejected = _count_records(run_dir / "data" / "rejected", limit)
    per_file = kept is not None and rejected is not None
    files, decontam = [], []
    for i in data_m.get("inputs", []):
        if i.get("role") == "decontamination":  # a benchmark's local copy the corpus was checked against
            decontam.append({k: i.get(k) for k in ("path", "sha256", "bytes", "benchmark", "file")})
            continue
        sha = i.get("sha256")
        name, lic = (kept[1].get(sha) or rejected[1].get(sha) or (None, None)) if per_file else (None, None)
        if name is None and i.get("source"):  # the manifest names each input's source (and its records' `file`)
            name, lic = i["source"], None
        if name is None:  # manifests from before that: guessed from the recorded globs
            name, lic = _owner(i["path"], patterns)
        if name in sources and sources[name].get("license"):
            lic = sources[name]["license"]
        files.append({"path": i["path"], "sha256": sha, "bytes": i.get("bytes"), "source": name, "license": lic,
                      "file": i.get("file"), "docs_kept": kept[0].get(sha, 0) if per_file else None,
                      "docs_rejected": rejected[0].get(sha, 0) if per_file else None})
    return {"sources": sources, "licenses": licenses, "data_files": files, "per_file_counts": per_file,
            "decontamination_files": decontam}


def shards_facts(run_dir: Path, shards_m: dict[str, Any] | None, sources: dict[str, Any]) -> dict[str, Any] | None:
    index_path = run_dir / "shards" / "index.json"
    index = read_json(index_path)
    if index is None:
        return None
    splits = index.get("splits", {})
    mixture = index.get("mixture") or {}
    for name in set(index.get("sources", [])) | set(sources):
        tr = splits.get("train", {}).get("sources", {}).get(name, {})
        va = splits.get("validation", {}).get("sources", {}).get(name, {})
        mx = (mixture.get("sources") or {}).get(name, {})
        sources.setdefault(name, {})["tokens"] = {
            "train": tr.get("tokens"), "validation": va.get("tokens"),
            "mixture": mx.get("realised_tokens", mx.get("tokens")), "train_documents": tr.get("documents"),
            "validation_documents": va.get("documents")}
    sealed = {o["path"]: o["sha256"] for o in (shards_m or {}).get("outputs", [])}
    return {"path": str(run_dir / "shards"), "format": index.get("format"),
            "index_sha256": sealed.get("index.json") or sha256_file(index_path),
            "tokens": sum(int(s.get("tokens") or 0) for s in splits.values()),
            "train_tokens": splits.get("train", {}).get("tokens"),
            "validation_tokens": splits.get("validation", {}).get("tokens"),
            "tokenizer_sha256": index.get("tokenizer_sha256"),
            "mixture": {"seed": mixture.get("seed"), "schedule": mixture.get("schedule"),
                        "tokens": mixture.get("tokens"), "documents": mixture.get("documents")}}


def tokenizer_facts(run_dir: Path, tok_m: dict[str, Any] | None, final_dir: Path) -> dict[str, Any] | None:
    folder = run_dir / "tokenizer"
    shipped = final_dir / "tokenizer.json"
    if tok_m is None and not shipped.is_file():
        return None
    metrics = (tok_m or {}).get("metrics", {})
    report = read_json(folder / "report.json") or {}
    return {"path": str(folder),
            "sha256": sha256_file(shipped) if shipped.is_file() else None,  # the tokenizer.json shipped in final/
            "stage_sha256": sha256_file(folder / "tokenizer.json") if (folder / "tokenizer.json").is_file() else None,
            "vocab_size": metrics.get("vocab_size"), "model_type": metrics.get("model_type"),
            "heldout_chars_per_token": metrics.get("heldout_chars_per_token", report.get("chars_per_token")),
            "files": (tok_m or {}).get("outputs", [])}


# ---------------------------------------------------------------------------------------------------------------------
# Base, compute, evaluation
# ---------------------------------------------------------------------------------------------------------------------


def imported_base(run_dir: Path) -> dict[str, Any]:
    """The foundation model the base stage imported, as its sealed report (base/base.json) records it."""
    r = read_json(run_dir / "base" / BASE_REPORT) or {}
    keys = ("name", "path", "license", "license_file", "readme_license", "architecture", "model_type", "parameters",
            "dtype", "weight_format", "vocab_size", "chat_template", "allow_pickle", "trust_remote_code",
            "allow_unknown_license", "warnings", "files",
            "bundle")  # the air-gap bundle it was carried in: bundle, entry, assets_sha256, source_id, revision
    return {"kind": "imported", **{k: r.get(k) for k in keys}}


def base_facts(run_dir: Path, stage: str, config: dict[str, Any], manifests: dict[str, dict]) -> dict[str, Any]:
    before = lineage(run_dir, stage)
    if before and (before[-1] == "base" or (stage == "pretrain" and "base" in before)):
        return imported_base(run_dir)
    if stage == "pretrain":
        model = config.get("model") or {}
        if model.get("init_from"):
            src = Path(model["init_from"])
            return {"kind": "init_from", "path": str(src), "files": file_entries(src)}
        keys = ("name", "architecture", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "tie_word_embeddings")
        return {"kind": "scratch", "model": {k: model.get(k) for k in keys if k in model}}
    prev = before[-1]
    m = manifests.get(prev) or {}
    weights = {o["path"]: o["sha256"] for o in m.get("outputs", []) if o["path"].endswith(".safetensors")}
    return {"kind": "stage", "stage": prev, "path": str(run_dir / prev / "final"), "fingerprint": m.get("fingerprint"),
            "weights_sha256": weights}


def compute_facts(stage: str, config: dict[str, Any], metrics: dict[str, Any], wall: float | None,
                  device: str | None) -> dict[str, Any]:
    world = metrics.get("world_size")
    params, tokens = metrics.get("parameters"), metrics.get("tokens_seen")
    fpt = metrics.get("flops_per_token")
    if fpt and tokens is not None:
        flops, method = float(fpt) * int(tokens), "flops_per_token x tokens_seen"
    elif params and tokens is not None:
        flops, method = 6.0 * int(params) * int(tokens), "6 x parameters x tokens_seen"
    else:
        flops, method = None, None
    hours = round(world * wall / 3600, 6) if world and wall is not None else None
    return {"stage": stage, "world_size": world, "device": device or "unknown",
            "precision": config.get("cluster.precision"), "zero_stage": metrics.get("zero_stage"),
            "parameters": params, "tokens_seen": tokens, "steps": metrics.get("steps"),
            "train_runtime": metrics.get("train_runtime"), "wall_seconds": wall, "device_hours": hours,
            "device_hours_unit": "GPU-hours" if device == "cuda" else "CPU-hours",
            "flops_per_token": fpt, "training_flops": flops, "training_flops_method": method}


_EVAL_KEYS = ("final_loss", "validation_loss", "validation_perplexity", "final_mean_token_accuracy",
              "mean_rewards_accuracies", "mean_rewards_margins",
              # dpo's held-out pairs (kgov_train.train.preference): before = the SFT model, after = this one
              "held_out.pairs", "held_out.logp_accuracy_before", "held_out.logp_accuracy",
              "held_out.logp_margin_before", "held_out.logp_margin", "held_out.reward_accuracy",
              "held_out.reward_margin")


def evaluation_facts(run_dir: Path, manifests: dict[str, dict], stage: str, metrics: dict[str, Any]) -> dict:
    training = {}
    for name in [n for n in manifests if is_training(n)] + [stage]:
        src = metrics if name == stage else (manifests.get(name) or {}).get("metrics", {})
        flat = _flatten(src)
        found = {k: flat[k] for k in _EVAL_KEYS if flat.get(k) is not None}
        if found:
            training[name] = found
    eval_dir = run_dir / "eval"
    em = read_json(eval_dir / MANIFEST)
    report_path = eval_dir / "report.json"
    if em is not None and em.get("status") == "complete":
        results, where = em.get("metrics") or {}, str(eval_dir / MANIFEST)
    elif report_path.is_file():  # the eval stage itself, writing the evaluated models' papers (eval/papers/)
        results, where = read_json(report_path) or {}, str(report_path)
    else:
        return {"training": training, "eval_stage": None, "eval_path": None, "eval_report_sha256": None,
                "bits_per_byte": None, "bits_per_byte_plot": None, "benchmark_datasets": {}}
    flat = {k: v for k, v in _flatten(results).items() if isinstance(v, (int, float, str, bool)) or v is None}
    plot = eval_dir / "bits_per_byte.png"
    return {"training": training, "eval_stage": dict(list(flat.items())[:200]), "eval_path": where,
            "eval_report_sha256": sha256_file(report_path) if report_path.is_file() else None,
            "bits_per_byte": bits_per_byte_facts(results, stage),
            "bits_per_byte_plot": str(plot) if plot.is_file() else None,
            "benchmark_datasets": results.get("benchmark_datasets") or {}}  # hub id -> {folder, bundle}


EVAL_BASE = "base"  # the eval stage's name for the imported foundation model (kgov_train.stages.eval.BASE)


def bits_per_byte_facts(results: dict[str, Any], stage: str) -> dict[str, Any] | None:
    """{text set: {bits_per_byte, base, vs_base}} of `stage` as the eval stage measured it (its manifest's
    bits_per_byte_by_stage, else report.json's bits_per_byte); base and vs_base (this model minus the imported
    foundation model, below 0 = fewer bits, better) when the run has one. None: the stage was not evaluated."""
    by = results.get("bits_per_byte_by_stage")
    if not isinstance(by, dict):
        by = {s: {k: v.get("bits_per_byte") for k, v in sets.items() if isinstance(v, dict)}
              for s, sets in (results.get("bits_per_byte") or {}).items() if isinstance(sets, dict)}
    own = by.get(stage)
    if not isinstance(own, dict) or not own:
        return None
    base = by.get(EVAL_BASE) if stage != EVAL_BASE and isinstance(by.get(EVAL_BASE), dict) else {}
    out = {}
    for k, v in own.items():
        b = base.get(k)
        out[k] = {"bits_per_byte": v, "base": b, "vs_base": None if v is None or b is None else round(v - b, 6)}
    return out


def _flatten(d: Any, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    if not isinstance(d, dict) or depth > 3:
        return {prefix: d} if not isinstance(d, (dict, list)) else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# All of it
# ---------------------------------------------------------------------------------------------------------------------


def gather(run_dir: Path, stage: str, final_dir: Path, config: dict[str, Any] | None = None,
           metrics: dict[str, Any] | None = None, recipe_name: str | None = None, device: str | None = None,
           per_file_limit: int = PER_FILE_COUNT_MAX_BYTES) -> dict[str, Any]:
    if not is_training(stage):
        raise ValueError(f"stage '{stage}': papers are written for training stages only "
                         f"({', '.join(TRAINING)}, sft_<name>)")
    run_dir, final_dir = Path(run_dir), Path(final_dir)
    upto = lineage(run_dir, stage)
    manifests = {n: m for n in upto if (m := read_json(run_dir / n / MANIFEST)) is not None}
    own = read_json(run_dir / stage / MANIFEST) or {}
    try:  # a re-generation keeps what only the live run knew (device, recipe name)
        previous = read_json(final_dir / "bom.json") or {}
    except ValueError:
        previous = {}
    config = config if config is not None else own.get("config", {})
    merged = dict(own.get("metrics") or {})
    merged.update(metrics or {})
    complete = own.get("status") == "complete"
    wall = own.get("wall_seconds") if complete else _wall_since(own.get("started_at"))
    device = device or (previous.get("compute") or {}).get("device")
    recipe_name = recipe_name or (previous.get("model") or {}).get("recipe_name")

    data = data_facts(run_dir, manifests.get("data"), per_file_limit)
    chain = [_stage_entry(n, manifests[n]) for n in upto if n in manifests]
    final_files = file_entries(final_dir, skip=PAPERS)
    chain.append({"stage": stage, "status": own.get("status", "running"), "fingerprint": own.get("fingerprint"),
                  "config_sha256": config_sha256(config), "config": config, "started_at": own.get("started_at"),
                  "ended_at": own.get("ended_at"), "wall_seconds": wall, "git_commit": own.get("git_commit"),
                  "host": own.get("host"),
                  "outputs": [{**e, "path": f"final/{e['path']}"} for e in final_files]})
    finetune = []
    trained = [n for n in upto if is_training(n) and n in manifests]  # the training stages before, in order
    for n in [*trained, stage]:
        if n == "pretrain":
            continue
        m = own if n == stage else manifests.get(n)
        for i in (m or {}).get("inputs", []):
            if "from_stage" not in i:
                finetune.append({"stage": n, "path": i["path"], "sha256": i.get("sha256"), "bytes": i.get("bytes")})
    cumulative = []
    for n in trained:
        m = manifests[n]
        cumulative.append(compute_facts(n, m.get("config", {}), m.get("metrics", {}), m.get("wall_seconds"), device))
    cumulative.append(compute_facts(stage, config, merged, wall, device))
    compute = dict(cumulative[-1])
    compute["chain"] = cumulative
    compute["chain_device_hours"] = round(sum(c["device_hours"] or 0 for c in cumulative), 6)
    compute["chain_training_flops"] = sum(c["training_flops"] or 0 for c in cumulative)

    return {
        "stage": stage, "run_dir": str(run_dir), "final_dir": str(final_dir),
        "status": own.get("status", "running"), "recipe_name": recipe_name,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config, "metrics": merged,
        "base": base_facts(run_dir, stage, config, manifests),
        "chain": chain, "final_files": final_files,
        "sources": data["sources"], "licenses": data["licenses"], "data_files": data["data_files"],
        "per_file_counts": data["per_file_counts"], "finetune_files": finetune,
        "decontamination_files": data["decontamination_files"],
        "tokenizer": tokenizer_facts(run_dir, manifests.get("tokenizer"), final_dir),
        "shards": shards_facts(run_dir, manifests.get("shards"), data["sources"]),
        "data_cutoff": data_cutoff(manifests.get("data")),
        "compute": compute,
        "evaluation": evaluation_facts(run_dir, manifests, stage, merged),
        "versions": own.get("versions") or versions(),
        "git_commit": own.get("git_commit") or git_commit(),
    }


def data_cutoff(data_m: dict[str, Any] | None) -> str | None:
    """When the corpus was frozen: the data stage's end time (the documents carry no reliable dates)."""
    return (data_m or {}).get("ended_at")
