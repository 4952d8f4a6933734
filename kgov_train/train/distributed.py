"""The process group: set up once per training process, and the few collectives the stages use (each a no-op
outside torch.distributed, so the same code runs in one plain process)."""

from __future__ import annotations

import logging
import os
import sys

from typing import Any

from omegaconf import DictConfig

log = logging.getLogger("kgov_train")


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the torchrun agent) dies.

    torchrun starts each worker in a session of its own, so a SIGKILL of the agent's process group (OOM killer,
    `kill -9`, a lost ssh session) would leave the workers training on as orphans, still writing checkpoints
    into the stage folder that the next run resumes from. With this they stop with their agent.
    """
    if not sys.platform.startswith("linux") or "LOCAL_RANK" not in os.environ:
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
            return
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the agent is already gone (reparented to init)
        os._exit(1)


def import_training_libraries() -> None:
    """Import torch, DeepSpeed and the transformers Trainer and model code with the garbage collector off, then
    freeze what they made (gc.freeze). Their ~500k objects live as long as the process: collecting them while they
    appear takes ~8 full collections (~0.6 s per rank on 2 CPU cores, scripts/bench_pretrain.py), and every later
    full collection would scan them again."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        import deepspeed  # noqa: F401  (imports torch)
        import transformers.modeling_utils  # noqa: F401
        import transformers.trainer  # noqa: F401
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def init_distributed(cfg: DictConfig) -> tuple[int, int]:
    """Initialise torch.distributed through DeepSpeed before any model is built.

    ZeRO-3's zero.Init reads the world size when the model is constructed, so the
    group must exist first; on CPU the backend is gloo (cluster.backend).
    """
    import_training_libraries()
    import deepspeed
    import torch.distributed as dist

    die_with_parent()
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=cfg.cluster.backend)
    return dist.get_rank(), dist.get_world_size()


def _group():
    """torch.distributed when a group of more than one process is up, else None."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def barrier() -> None:
    dist = _group()
    if dist is not None:
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (a picklable object)."""
    dist = _group()
    if dist is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce(value: float, op: str = "mean") -> float:
    """The mean (or max) of a float over every rank."""
    dist = _group()
    if dist is None:
        return value
    import torch

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return float(t.item()) / (1 if op == "max" else dist.get_world_size())
