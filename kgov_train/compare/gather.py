"""The figures of one run folder that `kgov-train compare` puts side by side, read through kgov_train.run_folder and
the facts the papers and the eval report already gather (kgov_train.papers.facts, kgov_train.evaluation.report).

    find_runs(paths)  the run folders named, a sweep folder's run folders in name order
    gather(run_dir)   stages and their status, notes, data funnel, tokenizer, training, eval (None where missing)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kgov_train.evaluation.report import gather_run
from kgov_train.papers.facts import compute_facts, evaluation_facts, tokenizer_facts
from kgov_train.run_folder import CHAIN, MANIFEST, SFT_NAME, is_training, read_json, read_manifest

SWEEP_DEPTH = 3  # how deep below a sweep folder run folders are looked for (<sweep>/<job>/<run>/<stage>)


class CompareError(ValueError):
    """A path that is not a run folder (or a folder of them), or a report that cannot be written."""


def stage_dirs(run_dir: Path) -> list[Path]:
    """The stage folders of a run (a subfolder with a manifest.json), in chain order (named SFT stages where sft is,
    in the order they started)."""
    found = [d for d in run_dir.iterdir() if d.is_dir() and (d / MANIFEST).is_file()] if run_dir.is_dir() else []

    def order(d: Path) -> tuple[int, str, str]:
        base = "sft" if SFT_NAME.match(d.name) else d.name
        pos = CHAIN.index(base) if base in CHAIN else len(CHAIN)
        return pos, str(read_manifest(d).get("started_at") or ""), d.name

    return sorted(found, key=order)


def is_run_folder(path: Path) -> bool:
    return bool(stage_dirs(path))


def _natural(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def _runs_below(folder: Path, depth: int) -> list[Path]:
    found = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if is_run_folder(d):
            found.append(d)
        elif depth > 1:
            found += _runs_below(d, depth - 1)
    return found


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Each path as a run folder, or (a sweep folder) the run folders below it in natural name order (2 before 10).
    Raises CompareError naming a path that is neither."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise CompareError(f"{p}: no such folder")
        if is_run_folder(p):
            runs.append(p.resolve())
            continue
        below = _runs_below(p, SWEEP_DEPTH)
        if not below:
            raise CompareError(f"{p}: not a run folder (no <stage>/{MANIFEST} in it) nor a sweep folder of run "
                               "folders")
        runs += sorted((r.resolve() for r in below), key=lambda r: _natural(r.relative_to(p.resolve())))
    if len(set(runs)) != len(runs):
        raise CompareError("the same run folder is named twice: " + ", ".join(sorted({str(r) for r in runs
                                                                                     if runs.count(r) > 1})))
    return runs


def _eval(run_dir: Path, status: str | None) -> dict[str, Any] | None:
    """The eval report's model-by-set bits per byte, lm-eval scores and perplexity, None without a report."""
    try:
        rep = read_json(run_dir / "eval" / "report.json")
    except ValueError:
        return None
    if not isinstance(rep, dict):
        return None
    bpb = {m: {k: (v or {}).get("bits_per_byte") for k, v in (sets or {}).items()}
           for m, sets in (rep.get("bits_per_byte") or {}).items()}
    bench = {m: {t: {"acc": r.get("acc"), "acc_norm": r.get("acc_norm"), "n": r.get("n")} for t, r in tasks.items()}
             for m, tasks in (rep.get("lm_eval") or {}).items()}
    ppl = {m: ((p or {}).get("all") or {}).get("perplexity") for m, p in (rep.get("perplexity") or {}).items()}
    korean = {m: {n: {"acc": (b.get("score") or {}).get("acc"), "macro": (b.get("macro") or {}).get("acc")}
                  for n, b in names.items()} for m, names in (rep.get("benchmarks") or {}).items()}
    return {"status": status, "model_stage": rep.get("model_stage"), "bits_per_byte": bpb, "lm_eval": bench,
            "perplexity": ppl, "benchmarks": korean}


def gather(run_dir: Path) -> dict[str, Any]:
    """One run's figures; a stage that is missing or not complete is named in `notes`, its figures left None."""
    dirs = stage_dirs(run_dir)
    manifests = {d.name: read_manifest(d) for d in dirs}
    stages = {n: str(m.get("status") or "unreadable manifest") for n, m in manifests.items()}
    training = [n for n in stages if is_training(n)]
    run = gather_run(run_dir, training)
    notes = [f"{n}: {s}" for n, s in stages.items() if s != "complete"]

    tok = None
    if "tokenizer" in manifests:
        t = tokenizer_facts(run_dir, manifests["tokenizer"], run_dir / "tokenizer")
        tok = {"vocab_size": t["vocab_size"], "model_type": t["model_type"],
               "heldout_chars_per_token": t["heldout_chars_per_token"]} if t else None

    figures: dict[str, dict[str, Any]] = {}
    if training:
        last = training[-1]
        try:
            figures = evaluation_facts(run_dir, {n: manifests[n] for n in training}, last,
                                       manifests[last].get("metrics") or {})["training"]
        except ValueError as e:  # an unreadable eval/report.json: the training figures are the manifests' own
            notes.append(str(e))
            figures = {n: {k: v for k, v in (manifests[n].get("metrics") or {}).items()
                           if k in ("final_loss", "validation_loss")} for n in training}
    train_out = {}
    for n in training:
        m = manifests[n]
        c = compute_facts(n, m.get("config") or {}, m.get("metrics") or {}, m.get("wall_seconds"), None)
        curve = run["training"].get(n) or {"steps": [], "loss": []}
        train_out[n] = {"status": stages[n], "steps": c["steps"], "tokens_seen": c["tokens_seen"],
                        "parameters": c["parameters"], "world_size": c["world_size"],
                        "training_flops": c["training_flops"], "training_flops_method": c["training_flops_method"],
                        "wall_seconds": c["wall_seconds"], **figures.get(n, {}),
                        "curve": {"steps": curve["steps"], "loss": curve["loss"]}}
        if not curve["loss"]:
            notes.append(f"{n}: no loss curve ({n}/metrics.jsonl missing or empty)")

    ev = _eval(run_dir, stages.get("eval"))
    if "eval" not in stages:
        notes.append("eval: missing" + (" (eval/report.json without a manifest)" if ev else ""))
    elif ev is None:
        notes.append("eval: no readable report.json")
    # data: docs_in, docs_kept, docs_rejected, rejected_by_reason, chars_kept (kgov_train.evaluation.report)
    return {"path": str(run_dir), "stages": stages, "notes": notes,
            "configs": {n: m.get("config") or {} for n, m in manifests.items()},
            "data": run["data"], "tokenizer": tok, "training": train_out, "eval": ev}
