"""`kgov-train compare RUN_DIR... | SWEEP_DIR [--out DIR] [--json]`: runs side by side (docs/compare.md).

    compare(paths, out=None) -> (report, out_dir)

reads each run folder (gather), the recipe keys that differ (diff), and writes compare.md, compare.json and the PNGs
(render) into `out`, by default <the runs' common parent>/compare/. A run that lacks a stage another run has, or
whose stage is not complete, is kept and noted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kgov_train.compare.diff import differences
from kgov_train.compare.gather import CompareError, find_runs, gather
from kgov_train.compare.render import markdown, plots

__all__ = ["CompareError", "compare", "names", "write"]

OUT = "compare"


def names(runs: list[Path]) -> tuple[list[str], Path]:
    """Each run's name (its path below the runs' common parent) and that parent."""
    if len(runs) == 1:
        return [runs[0].name], runs[0].parent
    parent = Path(os.path.commonpath([str(r) for r in runs]))
    return [r.relative_to(parent).as_posix() for r in runs], parent


def build(paths: list[str | Path]) -> tuple[dict[str, Any], Path]:
    runs = find_runs(paths)
    labels, parent = names(runs)
    gathered = {name: gather(path) for name, path in zip(labels, runs)}
    every = list(dict.fromkeys(s for g in gathered.values() for s in g["stages"]))
    for g in gathered.values():  # a stage another run has, missing here (eval is noted by gather)
        g["notes"] = [f"{s}: missing" for s in every if s not in g["stages"] and s != "eval"] + g["notes"]
    diff = differences({name: (g["configs"], Path(g["path"])) for name, g in gathered.items()})
    for g in gathered.values():
        g.pop("configs")
    return {"runs": gathered, "differences": diff, "plots": []}, parent


def write(report: dict[str, Any], out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("loss_*.png"):
            old.unlink()
        report["plots"] = plots(out, report)
        report["out_dir"] = str(out)
        (out / "compare.json").write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str) + "\n",
                                          encoding="utf-8")
        (out / "compare.md").write_text(markdown(report), encoding="utf-8")
    except OSError as e:
        raise CompareError(f"{out}: cannot write the comparison ({e.strerror or e})") from e


def compare(paths: list[str | Path], out: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """The comparison of the run folders (or sweep folders) in `paths`, written into `out`."""
    report, parent = build(paths)
    out_dir = Path(out) if out is not None else parent / OUT
    write(report, out_dir)
    return report, out_dir
