"""Process-group set-up shared by every training stage."""

from __future__ import annotations

from omegaconf import DictConfig


def init_distributed(cfg: DictConfig) -> tuple[int, int]:
    """Initialise torch.distributed through DeepSpeed before any model is built.

    ZeRO-3's zero.Init reads the world size when the model is constructed, so the
    group must exist first; on CPU the backend is gloo (cluster.backend).
    """
    import deepspeed
    import torch.distributed as dist

    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=cfg.cluster.backend)
    return dist.get_rank(), dist.get_world_size()
