"""Input files named in a recipe: globs expanded in order, each entry required to match."""

from __future__ import annotations

import glob
from pathlib import Path

from kgov_train.errors import RecipeError


def resolve_globs(patterns: list[str], key: str) -> list[Path]:
    """Expand file names and globs in order; every entry must match at least one file."""
    files: list[Path] = []
    for i, pattern in enumerate(patterns):
        matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            raise RecipeError(f"{key}[{i}]: no file matches '{pattern}'")
        files += [Path(m).resolve() for m in matches]
    return list(dict.fromkeys(files))
