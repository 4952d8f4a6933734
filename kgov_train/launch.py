"""Start a training stage as one process per device under torchrun.

On one machine the pipeline spawns `torchrun --standalone`; on Slurm the sbatch
template runs `srun torchrun` itself (see slurm/), and every process enters
`kgov_train.cli`, which then runs the single stage it was given in-process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from omegaconf import DictConfig

log = logging.getLogger("kgov_train")


class LaunchError(RuntimeError):
    pass


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def stage_env(cfg: DictConfig) -> dict[str, str]:
    env = os.environ.copy()
    env.update({str(k): str(v) for k, v in cfg.cluster.env.items()})
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


PLANNED_ENV = "KGOV_PLANNED_FINGERPRINT"


def torchrun_stage(cfg: DictConfig, stage: str, overrides: list[str], fingerprint: str) -> int:
    """Run one training stage on this machine; returns torchrun's exit status.

    The parent has planned the stage already (hashed every upstream output, model weights
    included); the fingerprint it passes lets rank 0 take that plan instead of hashing again."""
    if int(cfg.nnodes) > 1:
        raise LaunchError(
            f"nnodes={cfg.nnodes}: multi-node stages are launched by Slurm, one torchrun per node; "
            "submit with slurm/submit.py (see README, 'Slurm')"
        )
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
        f"--nproc_per_node={cfg.nproc_per_node}", "-m", "kgov_train.cli", *child_overrides(overrides, stage),
    ]
    log.info("%s: %s", stage, " ".join(cmd[1:]))
    return subprocess.call(cmd, env={**stage_env(cfg), PLANNED_ENV: fingerprint})
