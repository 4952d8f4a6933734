"""`kgov-train submit`: one sbatch job per stage, chained with --dependency=afterok.

Each job script is a template from slurm/ (train.sbatch for training stages,
cpu.sbatch for the others) whose #SBATCH lines are replaced by ones derived from
the cluster profile and whose arguments are the recipe's overrides, narrowed to
that stage. Rendered scripts are kept in <run_dir>/slurm/ for the record.

Under `kgov-train submit -m` (a sweep) each job of the sweep submits its own chain. A stage whose identity (its
config sections and its upstream stages' identities) equals a stage an earlier job of the sweep submitted waits
for that one too (`afterany`), and then finds its outputs in the sweep's stage cache instead of computing them.
The identity only orders the jobs: whether a stage is reused is decided when it runs, by its cache key (config
and input hashes, kgov_train/stage_cache.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from kgov_train import assets
from kgov_train.errors import SubmitError
from kgov_train.launch import child_overrides
from kgov_train.pipeline import stage_config
from kgov_train.stages import chain, selected

log = logging.getLogger("kgov_train")
TEMPLATES = assets.SLURM


@dataclass
class Job:
    stage: str
    script: str
    path: Path


def sbatch_options(cfg: DictConfig, stage: str, distributed: bool) -> list[str]:
    c = cfg.cluster
    log_dir = Path(cfg.run_dir).resolve() / "slurm"
    opts = [f"--job-name=kgov-{cfg.recipe_name}-{stage}", f"--output={log_dir}/{stage}-%j.out"]
    partition = c.partition if distributed else (c.cpu_partition or c.partition)
    opts += [f"--{k}={v}" for k, v in (("partition", partition), ("account", c.account), ("qos", c.qos)) if v]
    if distributed:
        # --open-mode=append: a requeued job keeps the log of its earlier runs
        opts += [f"--nodes={cfg.nnodes}", "--ntasks-per-node=1", f"--signal=B:USR1@{c.preempt_signal_seconds}",
                 "--requeue", "--open-mode=append"]
        if c.gpus_per_node:
            opts.append(f"--gpus-per-node={c.gpus_per_node}")
    else:
        opts += ["--nodes=1", "--ntasks=1"]
    opts += [f"--cpus-per-task={c.cpus_per_task}", f"--time={c.time}"]
    if c.mem is not None:
        opts.append(f"--mem={c.mem}")
    return opts


def render(cfg: DictConfig, stage: str, distributed: bool, overrides: list[str]) -> str:
    template = (TEMPLATES / ("train.sbatch" if distributed else "cpu.sbatch")).read_text(encoding="utf-8")
    lines = template.splitlines()
    body = [line for line in lines[1:] if not line.startswith("#SBATCH")]
    nproc = cfg.cluster.gpus_per_node or cfg.nproc_per_node
    head = [lines[0], f"# Rendered by `kgov-train submit` for stage '{stage}' of recipe '{cfg.recipe_name}'."]
    head += [f"#SBATCH {o}" for o in sbatch_options(cfg, stage, distributed)]
    # KGOV_VENV: the Python environment this submit runs in (a venv, a conda env, an editable checkout's .venv):
    # the job activates it, so it runs the same kgov-train whether that is a wheel install or a checkout.
    # KGOV_CONFIG_DIR: the user's own recipe folder (kgov-train --config-dir DIR), when there is one.
    env = {"KGOV_VENV": sys.prefix, "KGOV_WORKDIR": str(Path.cwd()), "NPROC_PER_NODE": str(nproc),
           **({"KGOV_CONFIG_DIR": os.environ["KGOV_CONFIG_DIR"]} if os.environ.get("KGOV_CONFIG_DIR") else {}),
           "MASTER_PORT": str(cfg.cluster.master_port),
           # where the job finds its stage's manifest to tell a preempted stage (requeue) from a failed one
           "KGOV_STAGE_DIR": str(Path(cfg.run_dir).resolve() / stage), "KGOV_MAX_REQUEUES": str(cfg.cluster.max_requeues),
           **{str(k): str(v) for k, v in cfg.cluster.env.items()}}
    setup = [f"export {k}={shlex.quote(v)}" for k, v in env.items()] + list(cfg.cluster.setup)
    args = child_overrides([o for o in overrides if not o.startswith("hydra.")], stage, force=bool(cfg.force))
    args_line = "set -- " + " ".join(shlex.quote(a) for a in args)
    return "\n".join(head + setup + [args_line] + body) + "\n"


def render_chain(cfg: DictConfig, overrides: list[str]) -> list[Job]:
    out_dir = Path(cfg.run_dir) / "slurm"
    return [
        Job(s.name, render(cfg, s.name, s.distributed, overrides), out_dir / f"{i:02d}-{s.name}.sbatch")
        for i, s in enumerate(selected(cfg, list(cfg.stages)))
    ]


def identities(cfg: DictConfig) -> dict[str, str]:
    """Each stage of the chain's identity as far as it is known before anything runs: its config sections and
    its upstream stages' identities (not the hashes of files that do not exist yet)."""
    out: dict[str, str] = {}
    for s in chain(cfg):
        blob = json.dumps({"stage": s.name, "config": stage_config(cfg, s), "needs": [out.get(n) for n in s.needs]},
                          sort_keys=True, default=str)
        out[s.name] = hashlib.sha256(blob.encode()).hexdigest()
    return out


def submit(cfg: DictConfig, overrides: list[str], dry_run: bool, twins: dict[str, str] | None = None,
           label: str = "") -> list[str]:
    """Write and (unless dry_run) submit the chain; returns job ids (placeholders `<label stage>` when dry).
    `twins` (a sweep's jobs share it): stage identity -> the first job submitted for it, which a job of the same
    identity waits for (afterany: it runs even when that one failed)."""
    jobs = render_chain(cfg, overrides)
    ident = identities(cfg) if twins is not None and cfg.get("cache_dir") else {}
    ids: list[str] = []
    for job in jobs:
        cmd = ["sbatch", "--parsable"]
        deps = [f"afterok:{ids[-1]}"] if ids else []
        twin = twins.get(ident[job.stage]) if twins is not None and job.stage in ident else None
        deps += [f"afterany:{twin}"] if twin else []
        if deps:
            # Without --kill-on-invalid-dep a stage whose predecessor failed would pend forever.
            cmd += [f"--dependency={','.join(deps)}", "--kill-on-invalid-dep=yes"]
        cmd.append(str(job.path))
        if dry_run:
            print(f"# {job.path}\n# {' '.join(cmd)}\n{job.script}")
            ids.append(f"<{label}{job.stage}>")
            if twins is not None and job.stage in ident:
                twins.setdefault(ident[job.stage], ids[-1])
            continue
        job.path.parent.mkdir(parents=True, exist_ok=True)
        job.path.write_text(job.script, encoding="utf-8")
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise SubmitError("sbatch not found: run `kgov-train submit` on a Slurm login node, or use --dry-run") from None
        if res.returncode != 0:
            raise SubmitError(f"sbatch refused {job.path}: {res.stderr.strip()}")
        ids.append(res.stdout.strip().split(";")[0])
        if twins is not None and job.stage in ident:
            twins.setdefault(ident[job.stage], ids[-1])
        log.info("submitted %s as job %s%s", job.stage, ids[-1], f" ({','.join(deps)})" if deps else "")
    return ids
