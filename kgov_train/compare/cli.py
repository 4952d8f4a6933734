"""`kgov-train compare RUN_DIR... | SWEEP_DIR [--out DIR] [--json]`: the arguments, one line for any error."""

from __future__ import annotations

import json
import sys

from kgov_train.compare import CompareError, compare

USAGE = "kgov-train compare RUN_DIR... | SWEEP_DIR [--out DIR] [--json]"
HELP = """Puts runs side by side: the recipe keys that differ, the data funnel, tokenizer characters per token, training
compute and losses, bits per byte, lm-eval, Korean benchmarks, DPO preference; loss curves per training stage. A
SWEEP_DIR's run folders (e.g. Hydra's <sweep>/<job number>/) are found and ordered by name. Writes compare.md,
compare.json and PNGs into --out (default: <the runs' common parent>/compare/); --json also prints the JSON.
docs/compare.md has more."""


def split_args(argv: list[str]) -> tuple[list[str], str | None, bool]:
    paths, out, as_json = [], None, False
    args = iter(argv)
    for arg in args:
        if arg == "--json":
            as_json = True
        elif arg == "--out" or arg.startswith("--out="):
            out = arg.split("=", 1)[1] if "=" in arg else next(args, None)
            if not out:
                raise CompareError(f"--out needs a folder; usage: {USAGE}")
        elif arg.startswith("-"):
            raise CompareError(f"{arg}: unknown flag; usage: {USAGE}")
        else:
            paths.append(arg)
    if not paths:
        raise CompareError(f"name at least one run folder or a sweep folder; usage: {USAGE}")
    return paths, out, as_json


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {USAGE}\n\n{HELP}")
        return 0
    try:
        paths, out, as_json = split_args(argv)
        report, out_dir = compare(paths, out)
    except (CompareError, ValueError) as e:
        print(f"kgov-train compare: {e}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report, ensure_ascii=False, indent=1, default=str))
    else:
        notes = sum(len(r["notes"]) for r in report["runs"].values())
        print(f"compared {len(report['runs'])} runs ({len(report['differences'])} recipe keys differ, {notes} "
              f"notes): {out_dir / 'compare.md'}")
    return 0
