"""Fixtures shared across test modules, defined once so that each runs once per session (see tests/chains.py)."""

import socket

import pytest

from tests.chains import smoke_run, trained, upstream_run  # noqa: F401
from tests.slurm_cluster import slurm_cluster, slurm_cluster_2nodes  # noqa: F401


@pytest.fixture
def no_network(monkeypatch):
    """Socket connections refused and HF_*_OFFLINE set: whatever tries the network fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(k, "1")
