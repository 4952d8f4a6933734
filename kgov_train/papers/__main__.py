"""python -m kgov_train.papers <run_dir> [stage ...]: write MODEL_CARD.md, bom.json and bom.cdx.json again for an
existing run."""

from __future__ import annotations

import sys

from kgov_train.papers import PapersError, regenerate


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    try:
        for path in regenerate(argv[0], argv[1:] or None):
            print(path)
    except PapersError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
