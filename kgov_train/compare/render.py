"""compare.md and the PNGs of a comparison: one column per run, "—" where a run has no such figure (its notes say
why), loss curves overlaid per training stage, bits per byte of each run's evaluated model per text set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kgov_train.evaluation.report import _grouped, _plt, _save

MISSING = "—"


def _cell(v: Any) -> str:
    if v is None:
        return MISSING
    if isinstance(v, float):
        return f"{v:.4g}"
    if not isinstance(v, str):
        v = json.dumps(v, ensure_ascii=False, default=str)
    v = v.replace("|", "\\|").replace("\n", " ")
    return v if len(v) <= 80 else v[:77] + "..."


def _table(names: list[str], rows: list[tuple[str, list[Any]]], head: str) -> list[str]:
    if not rows:
        return []
    return ([f"| {head} | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
            + [f"| {_cell(label)} | " + " | ".join(_cell(v) for v in vals) + " |" for label, vals in rows] + [""])


def _get(d: dict | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def figure_rows(report: dict[str, Any]) -> dict[str, list[tuple[str, list[Any]]]]:
    """The side-by-side tables: section -> [(row label, one value per run)]."""
    runs = list(report["runs"].values())
    out: dict[str, list[tuple[str, list[Any]]]] = {}
    reasons = list(dict.fromkeys(r for run in runs for r in (_get(run, "data", "rejected_by_reason") or {})))
    out["data"] = [(label, [_get(run, "data", *path) for run in runs]) for label, path in (
        ("documents in", ("docs_in",)), ("kept", ("docs_kept",)), ("dropped", ("docs_rejected",)),
        *((f"dropped: {r}", ("rejected_by_reason", r)) for r in reasons), ("characters kept", ("chars_kept",)))]
    out["tokenizer"] = [(label, [_get(run, "tokenizer", key) for run in runs]) for label, key in (
        ("vocabulary", "vocab_size"), ("model", "model_type"), ("characters per token (held out)",
                                                                 "heldout_chars_per_token"))]
    stages = list(dict.fromkeys(s for run in runs for s in run["training"]))
    out["training"] = [(f"{s}: {label}", [_get(run, "training", s, key) for run in runs]) for s in stages
                       for label, key in (("steps", "steps"), ("tokens seen", "tokens_seen"),
                                          ("training FLOPs (estimate)", "training_flops"),
                                          ("final loss", "final_loss"), ("validation loss", "validation_loss"),
                                          ("validation perplexity", "validation_perplexity"))]
    pref = list(dict.fromkeys(k for run in runs for t in run["training"].values() for k in t
                              if k.startswith("held_out.") or k.startswith("mean_rewards_")))
    out["preference"] = [(f"{s}: {k.removeprefix('held_out.')}", [_get(run, "training", s, k) for run in runs])
                         for s in stages for k in pref
                         if any(_get(run, "training", s, k) is not None for run in runs)]
    models = list(dict.fromkeys(m for run in runs for m in (_get(run, "eval", "bits_per_byte") or {})))
    out["bits_per_byte"] = [(f"{m} / {k}", [_get(run, "eval", "bits_per_byte", m, k) for run in runs])
                            for m in models for k in dict.fromkeys(
                                k for run in runs for k in (_get(run, "eval", "bits_per_byte", m) or {}))]
    out["perplexity"] = [(m, [_get(run, "eval", "perplexity", m) for run in runs])
                         for m in dict.fromkeys(m for run in runs for m in (_get(run, "eval", "perplexity") or {}))]
    bench = list(dict.fromkeys(m for run in runs for m in (_get(run, "eval", "lm_eval") or {})))
    out["lm_eval"] = [(f"{m} / {t} (acc)", [_get(run, "eval", "lm_eval", m, t, "acc") for run in runs])
                      for m in bench for t in dict.fromkeys(
                          t for run in runs for t in (_get(run, "eval", "lm_eval", m) or {}))]
    korean = list(dict.fromkeys(m for run in runs for m in (_get(run, "eval", "benchmarks") or {})))
    out["benchmarks"] = [(f"{m} / {n} ({k})", [_get(run, "eval", "benchmarks", m, n, k) for run in runs])
                         for m in korean for n in dict.fromkeys(
                             n for run in runs for n in (_get(run, "eval", "benchmarks", m) or {}))
                         for k in ("acc", "macro")]
    return {k: [(label, vals) for label, vals in rows if any(v is not None for v in vals)] for k, rows in out.items()}


SECTIONS = (
    ("data", "Data funnel (documents)", "data stage"),
    ("tokenizer", "Tokenizer", "figure"),
    ("training", "Training compute and loss", "stage: figure"),
    ("preference", "Preference on held-out pairs (DPO)", "stage: figure"),
    ("bits_per_byte", "Bits per byte (lower is better)", "model / text set"),
    ("perplexity", "Validation perplexity", "model"),
    ("lm_eval", "lm-eval", "model / task"),
    ("benchmarks", "Korean benchmarks (acc as lm-eval aggregates it; macro: mean over tasks)", "model / benchmark"),
)


def plots(out_dir: Path, report: dict[str, Any]) -> list[str]:
    """loss_<stage>.png per training stage (one line per run) and bits_per_byte.png (each run's evaluated model)."""
    runs = report["runs"]
    stages = list(dict.fromkeys(s for run in runs.values() for s in run["training"]))
    if not stages:
        return []
    plt = _plt()
    files = []
    for stage in stages:
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        for name, run in runs.items():
            curve = _get(run, "training", stage, "curve") or {}
            if curve.get("loss"):
                ax.plot(curve["steps"], curve["loss"], lw=1.2, label=name)
        ax.set_title(f"{stage} training loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        files.append(_save(fig, out_dir / f"loss_{stage}.png"))
    bpb = {name: _get(run, "eval", "bits_per_byte", _get(run, "eval", "model_stage") or "") or {}
           for name, run in runs.items()}
    if any(bpb.values()):
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        _grouped(ax, bpb)
        ax.set_title("bits per byte of each run's evaluated model (lower is better)")
        files.append(_save(fig, out_dir / "bits_per_byte.png"))
    return files


def markdown(report: dict[str, Any]) -> str:
    runs = report["runs"]
    names = list(runs)
    lines = [f"# Comparing {len(names)} runs", "", "| run | folder | stages | notes |", "|---|---|---|---|"]
    for name, run in runs.items():
        stages = ", ".join(s if st == "complete" else f"{s} ({st})" for s, st in run["stages"].items())
        notes = "; ".join(run["notes"]).replace("|", "\\|")
        lines.append(f"| {name} | `{run['path']}` | {stages or MISSING} | {notes} |")
    lines += ["", f"{MISSING}: the run has no such figure (see its notes).", "", "## Recipe differences", ""]
    diff = report["differences"]
    if diff:
        lines += ["The keys whose recorded values differ (each stage's manifest `config`; the run folder's own path "
                  "reads `<run_dir>`). A run without the stages that record a key shows " + MISSING + ".", ""]
        lines += _table(names, [(f"`{k}`", [row.get(n) for n in names]) for k, row in diff.items()], "key")
    else:
        lines += ["None: every key the runs' stages recorded has the same value.", ""]
    rows = figure_rows(report)
    for key, title, head in SECTIONS:
        if rows[key]:
            lines += [f"## {title}", ""] + _table(names, rows[key], head)
    if report["plots"]:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in report["plots"]] + [""]
    return "\n".join(lines) + "\n"
