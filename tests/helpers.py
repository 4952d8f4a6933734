"""Shared test helpers: compose recipes exactly as the CLI does."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from kgov_train.cli import _setup

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout under test: recipes/, examples/, scripts/


def compose_cfg(overrides: list[str]) -> DictConfig:
    _setup()
    with initialize_config_dir(config_dir=str(REPO_ROOT / "recipes"), version_base="1.3"):
        return compose("config", overrides=overrides)
