"""report.md, report.json and PNG plots (matplotlib, Agg) of a run: training loss curves, the data funnel, tokenizer
figures, perplexity, bits-per-byte and benchmark tables, and the generations side by side."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from kgov_train.run_folder import METRICS, TRAINING, read_jsonl, read_manifest

log = logging.getLogger("kgov_train")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    # Hangul labels need a CJK font; use one when the system has it, else glyphs fall back (warnings silenced).
    names = {f.name for f in font_manager.fontManager.ttflist}
    for font in ("NanumGothic", "Noto Sans CJK KR", "Noto Sans KR", "UnDotum", "Malgun Gothic", "AppleGothic"):
        if font in names:
            plt.rcParams["font.family"] = font
            break
    plt.rcParams["axes.unicode_minus"] = False
    warnings.filterwarnings("ignore", message=r"Glyph .* missing from font")
    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def gather_run(run_dir: Path, training: list[str] | tuple[str, ...] = TRAINING) -> dict[str, Any]:
    """What the upstream stages left: loss curves of the `training` stages, data funnel, tokenizer figures (each
    absent when missing)."""
    out: dict[str, Any] = {"training": {}, "data": None, "tokenizer": None}
    for stage in training:
        rows = read_jsonl(run_dir / stage / METRICS)
        if rows:
            m = read_manifest(run_dir / stage)
            out["training"][stage] = {
                "steps": [r.get("step") for r in rows if isinstance(r.get("loss"), (int, float))],
                "loss": [r.get("loss") for r in rows if isinstance(r.get("loss"), (int, float))],
                "final_loss": (m.get("metrics") or {}).get("final_loss"),
                "eval_loss": _first((m.get("metrics") or {}), "validation_loss", "eval_loss"),
                "held_out": (m.get("metrics") or {}).get("held_out"),  # dpo: preference on held-out pairs
            }
    dm = (read_manifest(run_dir / "data").get("metrics") or {})
    if dm:
        out["data"] = {"docs_in": dm.get("docs_in"), "rejected_by_reason": dm.get("rejected_by_reason") or {},
                       "docs_kept": dm.get("docs_kept"), "docs_rejected": dm.get("docs_rejected"),
                       "chars_kept": dm.get("chars_kept")}
    tr = run_dir / "tokenizer" / "report.json"
    if tr.is_file():
        try:
            rep = json.loads(tr.read_text(encoding="utf-8"))
            out["tokenizer"] = {
                name: {"all": res["all"].get("chars_per_token"),
                       "sources": {s: f.get("chars_per_token") for s, f in (res.get("sources") or {}).items()}}
                for name, res in (rep.get("evaluation") or {}).items()
            }
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
            log.warning("eval: %s unreadable; no tokenizer figures in the report", tr)
    return out


def _first(d: dict[str, Any], *keys: str) -> Any:
    return next((d[k] for k in keys if d.get(k) is not None), None)


def plots(out_dir: Path, run: dict[str, Any], ppl: dict[str, Any], bench: dict[str, Any],
          bpb: dict[str, dict[str, float | None]] | None = None) -> list[str]:
    """PNGs of the figures; bpb: {model: {set: bits per byte}}."""
    plt = _plt()
    files = []
    training = run["training"]
    if training:
        fig, axes = plt.subplots(1, len(training), figsize=(4.5 * len(training), 3.4), squeeze=False)
        for ax, (stage, t) in zip(axes[0], training.items()):
            ax.plot(t["steps"], t["loss"], lw=1.2)
            ax.set_title(f"{stage} training loss")
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.grid(alpha=0.3)
        files.append(_save(fig, out_dir / "loss_curves.png"))
    if run["data"]:
        d = run["data"]
        labels = ["docs_in"] + [f"rejected: {r}" for r in d["rejected_by_reason"]] + ["docs_kept"]
        values = [d["docs_in"] or 0] + list(d["rejected_by_reason"].values()) + [d["docs_kept"] or 0]
        fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(labels) + 1.5))
        colors = ["tab:blue"] + ["tab:red"] * len(d["rejected_by_reason"]) + ["tab:green"]
        ax.barh(labels[::-1], values[::-1], color=colors[::-1])
        for y, v in enumerate(values[::-1]):
            ax.text(v, y, f" {v}", va="center")
        ax.set_title("data stage funnel (documents)")
        files.append(_save(fig, out_dir / "data_funnel.png"))
    if run["tokenizer"]:
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
        _grouped(ax, {name: {"all": t["all"], **t["sources"]} for name, t in run["tokenizer"].items()})
        ax.set_title("tokenizer: characters per token (higher = more text per token)")
        files.append(_save(fig, out_dir / "tokenizer_chars_per_token.png"))
    if ppl:
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
        _grouped(ax, {stage: {"all": p["all"]["perplexity"], **{s: f["perplexity"] for s, f in p["sources"].items()}}
                      for stage, p in ppl.items()})
        ax.set_title("validation perplexity (lower is better)")
        ax.set_yscale("log")
        files.append(_save(fig, out_dir / "perplexity.png"))
    if bpb:
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
        _grouped(ax, bpb)
        ax.set_title("bits per byte, each model with its own tokenizer (lower is better)")
        files.append(_save(fig, out_dir / "bits_per_byte.png"))
    if bench:
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
        _grouped(ax, {stage: {t: r["acc"] for t, r in b.items()} for stage, b in bench.items()})
        ax.set_ylim(0, 1)
        ax.set_title("lm-eval accuracy")
        files.append(_save(fig, out_dir / "lm_eval.png"))
    return files


def _grouped(ax, series: dict[str, dict[str, float | None]]) -> None:
    """One bar group per category (inner keys), one bar colour per series (outer keys)."""
    cats = list(dict.fromkeys(k for s in series.values() for k in s))
    width = 0.8 / max(len(series), 1)
    for i, (name, vals) in enumerate(series.items()):
        xs = [c + i * width for c in range(len(cats))]
        ax.bar(xs, [vals.get(c) or 0 for c in cats], width, label=name)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cats))])
    ax.set_xticklabels(cats, rotation=15, ha="right", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _bpb_table(report: dict[str, Any]) -> list[str]:
    """Bits per byte, one row per text set, one column per model (and model_stage minus base when both are there)."""
    bpb = report.get("bits_per_byte") or {}
    if not bpb:
        return []
    models = list(bpb)
    sets = list(dict.fromkeys(k for b in bpb.values() for k in b))
    main, base = report["model_stage"], report.get("base")
    delta = bool(base) and base in bpb and main in bpb and main != base
    sizes = report.get("text_sets") or {}
    lines = ["## Bits per byte", "",
             "Negative log-likelihood in bits per UTF-8 byte of the same raw text, each model through its own "
             "tokenizer (comparable across tokenizers; lower is better)."
             + (f" Change: `{main}` minus `{base}`; below 0 means `{main}` models the text better." if delta else ""),
             "", "| set | " + " | ".join(models) + (" | change |" if delta else " |") + " documents | bytes |",
             "|---|" + "---:|" * (len(models) + delta + 2)]
    for k in sets:
        vals = [bpb[m].get(k, {}).get("bits_per_byte") for m in models]
        row = f"| {_cell(k)} | " + " | ".join(_cell(v) for v in vals) + " |"
        if delta:
            a, b = bpb[main].get(k, {}).get("bits_per_byte"), bpb[base].get(k, {}).get("bits_per_byte")
            row += f" {_cell(None if a is None or b is None else round(a - b, 6))} |"
        lines.append(row + f" {_cell(sizes.get(k, {}).get('documents'))} | {_cell(sizes.get(k, {}).get('bytes'))} |")
    return lines + [""]


def _score(b: dict[str, Any]) -> str:
    s = b["score"]
    main = s.get("acc", s.get("exact_match", next(iter(s.values()), None)))
    return f"{_cell(main)} ({b['items']})"


def _benchmark_tables(kbench: dict[str, Any]) -> list[str]:
    """Korean benchmarks: one row per stage, then per benchmark its categories and tasks for the last stage."""
    if not kbench:
        return []
    names = list(dict.fromkeys(n for k in kbench.values() for n in k))
    lines = ["## Korean benchmarks (lm-eval's tasks on local copies: accuracy, items)", "",
             "| stage | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for stage, k in kbench.items():
        lines.append(f"| {stage} | " + " | ".join(_score(k[n]) if n in k else "–" for n in names) + " |")
    stage, last = list(kbench.items())[-1]
    lines.append("")
    for name, b in last.items():
        score = ", ".join(f"{k} {_cell(v)}" for k, v in b["score"].items())
        lines += [f"### {name} ({stage})", "", f"- score: {score}, aggregated as {b['aggregation']}",
                  f"- macro average over its {len(b['tasks'])} tasks (as the KMMLU paper reports): "
                  f"{_cell(b['macro'].get('acc'))}",
                  f"- chat template: {'yes' if b.get('chat_template') else 'no'}", ""]
        if b["groups"]:
            lines += ["| category | score |", "|---|---:|"]
            lines += [f"| {g} | {_cell(v.get('acc', next(iter(v.values()), None)))} |" for g, v in b["groups"].items()]
            lines.append("")
        if len(b["tasks"]) > 1:
            lines += ["| task | accuracy | items |", "|---|---:|---:|"]
            lines += [f"| {t} | {_cell(r.get('acc', r.get('exact_match')))} | {r['n']} |"
                      for t, r in b["tasks"].items()]
            lines.append("")
    return lines


def markdown(report: dict[str, Any], images: list[str]) -> str:
    lines = ["# Evaluation report", "", f"- model evaluated: `{report['model_stage']}` "
             f"(`{report['models'].get(report['model_stage'])}`)",
             f"- stages compared: {', '.join(report['stages'])}"
             + (f" (`{report['base']}`: the imported foundation model)" if report.get("base") else ""),
             f"- window: {report['seq_len']} tokens (perplexity; bits per byte: at most the model's length), at most "
             f"{report['max_tokens_per_source']} validation tokens per source", ""]
    ppl = report["perplexity"]
    if ppl:
        sources = list(dict.fromkeys(s for p in ppl.values() for s in p["sources"]))
        lines += ["## Validation perplexity", "", "| stage | all | " + " | ".join(sources) + " | tokens |",
                  "|---|---:|" + "---:|" * len(sources) + "---:|"]
        for stage, p in ppl.items():
            lines.append(f"| {stage} | {_cell(p['all']['perplexity'])} | "
                         + " | ".join(_cell(p["sources"].get(s, {}).get("perplexity")) for s in sources)
                         + f" | {p['all']['tokens']} |")
        lines.append("")
    lines += _bpb_table(report)
    bench = report["lm_eval"]
    if bench:
        tasks = list(dict.fromkeys(t for b in bench.values() for t in b))
        lines += ["## Benchmarks (lm-evaluation-harness, acc / acc_norm, items)", "",
                  "| stage | " + " | ".join(tasks) + " |", "|---|" + "---:|" * len(tasks)]
        for stage, b in bench.items():
            lines.append(f"| {stage} | " + " | ".join(
                f"{_cell(b[t]['acc'])} / {_cell(b[t]['acc_norm'])} ({b[t]['n']})" if t in b else "–" for t in tasks)
                + " |")
        lines.append("")
    lines += _benchmark_tables(report.get("benchmarks") or {})
    training = report["run"]["training"]
    if training:
        lines += ["## Training", "", "| stage | logged steps | first loss | final loss | eval loss |",
                  "|---|---:|---:|---:|---:|"]
        for stage, t in training.items():
            lines.append(f"| {stage} | {len(t['loss'])} | {_cell(t['loss'][0] if t['loss'] else None)} | "
                         f"{_cell(t['final_loss'])} | {_cell(t['eval_loss'])} |")
        lines.append("")
    pref = {stage: t["held_out"] for stage, t in training.items() if t.get("held_out")}
    if pref:
        lines += ["## Preference on held-out pairs (DPO)", "",
                  "Chosen preferred: share of pairs whose chosen answer has the higher log-probability, before "
                  "training (the reference model) and after. Reward: TRL's implicit reward, 0 for every pair "
                  "before training.", "",
                  "| stage | pairs | chosen preferred before | after | log-prob margin before | after | "
                  "reward accuracy | reward margin |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for stage, h in pref.items():
            lines.append(f"| {stage} | {h.get('pairs')} | " + " | ".join(_cell(h.get(k)) for k in (
                "logp_accuracy_before", "logp_accuracy", "logp_margin_before", "logp_margin", "reward_accuracy",
                "reward_margin")) + " |")
        lines.append("")
    d = report["run"]["data"]
    if d:
        lines += ["## Data funnel", "", "| step | documents |", "|---|---:|", f"| in | {_cell(d['docs_in'])} |"]
        lines += [f"| rejected: {r} | {n} |" for r, n in d["rejected_by_reason"].items()]
        lines += [f"| kept | {_cell(d['docs_kept'])} |", ""]
    tok = report["run"]["tokenizer"]
    if tok:
        lines += ["## Tokenizer (characters per token)", "", "| tokenizer | source | chars/token |", "|---|---|---:|"]
        for name, t in tok.items():
            lines.append(f"| {name} | all | {_cell(t['all'])} |")
            lines += [f"| {name} | {s} | {_cell(v)} |" for s, v in t["sources"].items()]
        lines.append("")
    if images:
        lines += ["## Plots", ""] + [f"![{Path(i).stem}]({i})" for i in images] + [""]
    gens = report["generations"]
    if gens:
        stages = list(dict.fromkeys(s for g in gens for s in g["outputs"]))
        lines += ["## Generations (greedy)", ""]
        for g in gens:
            lines += [f"### {g['id']}: {g['prompt']}", "", "| stage | output |", "|---|---|"]
            lines += [f"| {s} | {_cell(g['outputs'].get(s))} |" for s in stages] + [""]
    return "\n".join(lines) + "\n"
