"""Where the files that ship with kgov-train live: the recipe tree, the sbatch templates, the example data.

One place for it, so a wheel install (package data) and a source checkout find them the same way:

- installed from a wheel (``pip install .``): ``kgov_train/_assets/{recipes,slurm,examples}/``,
  package data mapped from the checkout's top-level folders (pyproject.toml, setup.py);
- a source checkout or an editable install (``pip install -e .``, scripts/setup.sh): the
  checkout's own ``recipes/``, ``slurm/`` and ``examples/`` beside the package.

ROOT holds all three; recipes name example data as ``${kgov_root:}/examples/...`` (kgov_train/cli.py).
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
SOURCE_ROOT = _HERE.parent  # a source checkout: recipes/, slurm/, examples/ beside the package
PACKAGED_ROOT = _HERE / "_assets"  # a wheel install: the same three folders as package data


def _root() -> Path:
    if (PACKAGED_ROOT / "recipes" / "config.yaml").is_file():
        return PACKAGED_ROOT
    return SOURCE_ROOT


ROOT = _root()
RECIPES = ROOT / "recipes"
SLURM = ROOT / "slurm"
EXAMPLES = ROOT / "examples"
