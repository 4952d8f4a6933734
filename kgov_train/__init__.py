"""kgov-train: offline, end-to-end training of Korean LLMs for the public sector."""

from pathlib import Path

__version__ = "0.1.0"
REPO_ROOT = Path(__file__).resolve().parents[1]
