"""Start a training stage as one process per device under torchrun.

On one machine the pipeline spawns `torchrun --standalone`; on Slurm the sbatch
template runs `srun torchrun` itself (see slurm/), and every process enters
`kgov_train.cli`, which then runs the single stage it was given in-process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from kgov_train import offline
from kgov_train.errors import LaunchError

log = logging.getLogger("kgov_train")

# Our own arguments of a torchrun child, taken off argv by the CLI before Hydra parses the overrides.
PLANNED_ARG = "--planned="  # the fingerprint of the plan the parent made (rank 0 takes it instead of re-hashing)
LOCK_ARG = "--run-lock="  # the parent's hold on the run folder, which rank 0 joins (kgov_train.runlock)


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def ops_cache_env() -> dict[str, str]:
    """Where DeepSpeed keeps the ops it JIT-builds (the CPU shared-memory comm op at every start, cpu_adam under
    offload): one folder per Python environment. torch's default is one folder per user and Python version, and
    a build there records the source paths of the venv that built it, so two venvs of one user (a checkout and
    an install, CI's clone) rebuild each other's ops at every switch: ~33 s of a smoke stage's start for the comm
    op, minutes for cpu_adam. A TORCH_EXTENSIONS_DIR the user exported wins."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return {"TORCH_EXTENSIONS_DIR": str(cache / "torch_extensions" / f"kgov-py{sys.version_info[0]}{sys.version_info[1]}-{venv}")}


def stage_env(cfg: DictConfig, stage: str) -> dict[str, str]:
    """The environment of a stage's torchrun: ours, the cluster profile's `env`, the offline defaults."""
    env = os.environ.copy()
    env.update({str(k): str(v) for k, v in cfg.cluster.env.items()})
    offline.apply_defaults(env, {**offline.tracker_env(Path(cfg.run_dir) / stage, str(cfg.recipe_name)),
                                  **ops_cache_env()})
    if cfg.cluster.device == "cpu":
        env.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed skips its GPU probe and the warning that comes with it
    # Leave one core's worth of threads per process instead of oversubscribing the CPU.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(cfg.nproc_per_node))))
    return env


def child_overrides(overrides: list[str], stage: str, force: bool = False) -> list[str]:
    """The user's overrides with the stage list narrowed to one stage.

    A local parent has already applied `force` (cleared the folder), so its children get force=false.
    """
    ours = ("stages", "force")
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ours]
    return kept + [f"stages=[{stage}]", f"force={str(force).lower()}"]


def torchrun_stage(cfg: DictConfig, stage: str, overrides: list[str], fingerprint: str, lock_token: str) -> int:
    """Run one training stage on this machine; returns torchrun's exit status.

    The parent has planned the stage already (hashed every upstream output, model weights
    included); the fingerprint it passes lets rank 0 take that plan instead of hashing again."""
    if int(cfg.nnodes) > 1:
        raise LaunchError(
            f"nnodes={cfg.nnodes}: multi-node stages are launched by Slurm, one torchrun per node; "
            "submit them with `kgov-train submit` (see docs/operations.md)"
        )
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
        f"--nproc_per_node={cfg.nproc_per_node}", "-m", "kgov_train.cli",
        f"{PLANNED_ARG}{fingerprint}", f"{LOCK_ARG}{lock_token}", *child_overrides(overrides, stage),
    ]
    log.info("%s: %s", stage, " ".join(cmd[1:]))
    return subprocess.call(cmd, env=stage_env(cfg, stage))
