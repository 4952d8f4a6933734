"""Fixtures shared across test modules, defined once so that each runs once per session (see tests/chains.py)."""

from tests.chains import smoke_run, trained, upstream_run  # noqa: F401
from tests.slurm_cluster import slurm_cluster, slurm_cluster_2nodes  # noqa: F401
