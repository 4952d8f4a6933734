"""Where the files that ship with kgov-train live: the recipe tree, the sbatch templates, the example data.

One place for it, so a wheel install (package data) and a source checkout find them the same way.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
SOURCE_ROOT = _HERE.parent  # a source checkout: recipes/, slurm/, examples/ beside the package

ROOT = SOURCE_ROOT
RECIPES = ROOT / "recipes"
SLURM = ROOT / "slurm"
EXAMPLES = ROOT / "examples"
