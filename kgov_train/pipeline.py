"""Run the chain: decide per stage whether to skip, resume or start afresh; seal manifests.

Make-like rule: a stage whose manifest is `complete` with the same config and the
same input hashes is skipped. A stage that was interrupted (status `running` or
`failed`) with the same inputs keeps its folder, so training resumes from its
checkpoints. New inputs, or `force=true`, start the stage from an empty folder.
With a stage cache (`cache_dir`, set for every run of a sweep), a stage whose key
has a cache entry is filled from it instead of computed, and every stage sealed
here is published to it (kgov_train/stage_cache.py).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kgov_train import launch, runlock, stage_cache
from kgov_train.config.validate import raise_problems, recipe_problems
from kgov_train.errors import ManifestError, RunFolderBusy, StageFailed, TrainingInterrupted
from kgov_train.manifest import Manifest, fingerprint, hash_entries, verify_external_inputs, verify_outputs
from kgov_train.run_folder import MANIFEST, TRACEBACK, StageContext
from kgov_train.stages import Stage, by_name, chain, selected
from kgov_train.train.distributed import barrier, broadcast, init_distributed

log = logging.getLogger("kgov_train")


def validate(cfg: DictConfig) -> None:
    """Every check of the recipe, run-wide and of each selected stage, before any work; RecipeError lists them all."""
    errors = recipe_problems(cfg, [s.name for s in chain(cfg)])
    for stage in selected(cfg, list(cfg.stages)):  # the known ones: every bad key in one message
        errors += stage.check(cfg)
    raise_problems(errors)


@dataclass
class Plan:
    stage: Stage
    stage_dir: Path
    manifest: Manifest
    skip: bool
    reused: bool = False  # filled from the stage cache


SECRET_KEYS = ("salt",)  # never written to a manifest; a digest stands in, so a change still reruns the stage


def _redact(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (f"<redacted sha256:{hashlib.sha256(str(v).encode()).hexdigest()[:16]}>"
                    if k in SECRET_KEYS and v is not None else _redact(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact(v) for v in node]
    return node


def stage_config(cfg: DictConfig, stage: Stage) -> dict[str, Any]:
    """The resolved config sections the stage depends on, as recorded in its manifest (secrets redacted)."""
    return _redact({key: OmegaConf.to_container(OmegaConf.select(cfg, key), resolve=True)
                    if OmegaConf.is_config(OmegaConf.select(cfg, key)) else OmegaConf.select(cfg, key)
                    for key in stage.config_keys})


def upstream_inputs(run_dir: Path, stage: Stage) -> list[dict[str, Any]]:
    """The sealed outputs of the stages this one needs, each re-hashed and checked."""
    inputs = []
    for name in stage.needs:
        up_dir = run_dir / name
        try:
            m = verify_outputs(up_dir)
        except ManifestError as e:
            raise ManifestError(f"stage '{stage.name}' needs stage '{name}': {e}") from None
        inputs += [{"path": str(up_dir / o["path"]), "sha256": o["sha256"], "from_stage": name} for o in m.outputs]
        if name == "base":  # the imported model is read where it lies: its files, as the base stage verified them
            try:
                inputs += [{**e, "from_stage": name} for e in verify_external_inputs(m, up_dir)]
            except ManifestError as e:
                raise ManifestError(f"stage '{stage.name}' needs stage '{name}': {e}") from None
    return inputs


def plan_stage(cfg: DictConfig, stage: Stage, force: bool) -> Plan:
    run_dir = Path(cfg.run_dir)
    stage_dir = run_dir / stage.name
    labels = stage.input_labels(cfg)  # e.g. the data stage's source and file, what its records name
    inputs = upstream_inputs(run_dir, stage) + [{**e, **labels.get(e["path"], {})}
                                                for e in hash_entries(stage.external_inputs(cfg))]
    config = stage_config(cfg, stage)
    fp = fingerprint(config, inputs)
    key = stage_cache.cache_key(config, inputs, run_dir)
    old = Manifest.load(stage_dir)
    if old and old.status == "complete" and old.fingerprint == fp and not force:
        return Plan(stage, stage_dir, old, skip=True)
    cache = cache_dir(cfg)
    if cache is not None and not force:
        hit = stage_cache.fill(cache, stage_dir, Manifest(stage=stage.name, fingerprint=fp, config=config,
                                                          inputs=inputs, cache_key=key))
        if hit is not None:
            return Plan(stage, stage_dir, hit, skip=True, reused=True)
        old = Manifest.load(stage_dir)  # a refused entry leaves the folder empty
    same_inputs = old is not None and [(i["path"], i["sha256"]) for i in old.inputs] == [
        (i["path"], i["sha256"]) for i in inputs
    ]
    if stage_dir.exists() and (force or not same_inputs):
        why = "force=true" if force else "its inputs changed"
        log.info("%s: clearing %s (%s)", stage.name, stage_dir, why)
        shutil.rmtree(stage_dir)
    elif old is not None and any(p.name != MANIFEST for p in stage_dir.iterdir()):
        log.info("%s: previous run was %s with the same inputs; continuing in %s", stage.name, old.status, stage_dir)
    manifest = Manifest(stage=stage.name, fingerprint=fp, config=config, inputs=inputs, cache_key=key)
    manifest.save(stage_dir)
    return Plan(stage, stage_dir, manifest, skip=False)


def cache_dir(cfg: DictConfig) -> Path | None:
    return Path(str(cfg.cache_dir)).expanduser() if cfg.get("cache_dir") else None


def execute(plan: Plan, cfg: DictConfig, rank: int = 0, world_size: int = 1) -> Manifest:
    """Run a planned stage in this process; rank 0 seals the manifest."""
    run_dir = Path(cfg.run_dir)
    ctx = StageContext(
        cfg=cfg, run_dir=run_dir, stage_dir=plan.stage_dir,
        upstream={n: run_dir / n for n in plan.stage.needs}, rank=rank, world_size=world_size,
    )
    started = time.time()
    m = plan.manifest
    try:
        result = plan.stage.run(ctx)
    except TrainingInterrupted as e:  # on purpose: no traceback, and the next run resumes
        if rank == 0:
            m.error = f"{e.reason}: {e}"
            m.finish("interrupted", started)
            m.save(plan.stage_dir)
        raise
    except BaseException as e:
        if rank == 0:
            # The traceback is for developers; users get the one-line error and this file's path.
            (plan.stage_dir / TRACEBACK).write_text(traceback.format_exc(), encoding="utf-8")
            m.error = f"{type(e).__name__}: {e}"
            m.finish("failed", started)
            m.save(plan.stage_dir)
        raise
    if rank == 0:
        m.outputs = hash_entries([plan.stage_dir / o for o in result.outputs], relative_to=plan.stage_dir)
        m.metrics = result.metrics
        m.finish("complete", started)
        m.save(plan.stage_dir)
        cache = cache_dir(cfg)
        if cache is not None:
            stage_cache.publish(cache, plan.stage_dir, m, replace=bool(cfg.force))
    return m


def run_chain(cfg: DictConfig, overrides: list[str]) -> list[Manifest]:
    """Run the recipe's stages in order, holding the run folder for the whole chain (runlock): a second chain on
    the same folder is refused at once, naming this one."""
    with runlock.acquire(Path(cfg.run_dir)) as lock:
        return _run_stages(cfg, overrides, lock.token)


def _run_stages(cfg: DictConfig, overrides: list[str], lock_token: str) -> list[Manifest]:
    done = []
    for stage in selected(cfg, list(cfg.stages)):
        plan = plan_stage(cfg, stage, force=bool(cfg.force))
        if plan.skip:
            if not plan.reused:
                log.info("%s: complete with the same config and inputs, skipped (force=true reruns it)", stage.name)
            done.append(plan.manifest)
            continue
        log.info("%s: running -> %s", stage.name, plan.stage_dir)
        t0 = time.time()
        if stage.distributed:
            m = _run_training_stage(cfg, stage, plan, overrides, lock_token)
        else:
            try:
                m = execute(plan, cfg)
            except ManifestError:
                raise
            except Exception:
                raise StageFailed(_failure(stage.name, plan.stage_dir, Manifest.load(plan.stage_dir), "")) from None
        log.info("%s: complete in %.1fs; %s", stage.name, time.time() - t0, _summary(m.metrics))
        done.append(m)
    return done


def run_distributed_stage(cfg: DictConfig, planned: str | None = None, lock_token: str | None = None) -> None:
    """Entry for each torchrun process: rank 0 holds the run folder, plans and seals; every rank trains.

    Started by a local chain, `planned` is the fingerprint of the plan it made (it hashed every input already) and
    `lock_token` its hold on the run folder, which rank 0 joins. Started by Slurm (srun torchrun), rank 0 plans and
    takes the run folder itself, for the job (a requeued job takes over from its own earlier run)."""
    import warnings

    # Libraries' deprecation notices about their own internals, repeated by every rank, bury the training log.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|transformers|trl|deepspeed|accelerate)\.")

    rank, world = init_distributed(cfg)
    names = list(cfg.stages)
    stage = by_name(cfg, names[0]) if len(names) == 1 else None
    if stage is None or not stage.distributed:
        raise StageFailed(f"under torchrun, stages must name one training stage, got stages={names}")
    decision: Any = None
    lock = None
    if rank == 0:
        try:
            lock = runlock.acquire(Path(cfg.run_dir), inherit=lock_token)
            m = Manifest.load(Path(cfg.run_dir) / stage.name)
            if planned and m and m.status == "running" and m.fingerprint == planned:
                decision = (False, m)  # planned by the local parent that started us
            else:
                plan = plan_stage(cfg, stage, force=bool(cfg.force))
                decision = (plan.skip, plan.manifest)
        except (ManifestError, RunFolderBusy) as e:
            decision = (type(e).__name__, str(e))  # as text: every rank raises the same plain error
    decision = broadcast(decision)
    try:
        if isinstance(decision[0], str):
            raise (RunFolderBusy if decision[0] == "RunFolderBusy" else ManifestError)(decision[1])
        skip, manifest = decision
        if skip:
            if rank == 0:
                log.info("%s: complete with the same config and inputs, skipped", stage.name)
            return
        execute(Plan(stage, Path(cfg.run_dir) / stage.name, manifest, skip=False), cfg, rank, world)
        barrier()
    finally:
        if lock is not None:
            lock.release()


def _run_training_stage(cfg: DictConfig, stage: Stage, plan: Plan, overrides: list[str], lock_token: str) -> Manifest:
    """torchrun the stage; relaunch it after a spike rollback (it resumes from its last checkpoint)."""
    relaunches = int(cfg.pretrain.spike.max_events) if stage.name == "pretrain" else 0
    for attempt in range(relaunches + 1):
        rc = launch.torchrun_stage(cfg, stage.name, overrides, plan.manifest.fingerprint, lock_token)
        m = Manifest.load(plan.stage_dir)
        if rc == 0 and m is not None and m.status == "complete":
            if cfg.force and cache_dir(cfg) is not None:  # the children ran with force=false: replace the entry here
                stage_cache.publish(cache_dir(cfg), plan.stage_dir, m, replace=True)
            return m
        if m is not None and m.status == "interrupted" and (m.error or "").startswith("rollback"):
            log.warning("%s: %s; restarting from the last checkpoint (%d of at most %d)", stage.name, m.error,
                        attempt + 1, relaunches)
            plan.manifest.status = "running"
            plan.manifest.save(plan.stage_dir)
            continue
        if m is not None and m.status == "interrupted":
            raise StageFailed(f"stage '{stage.name}' {m.error}; its checkpoint is saved, rerun the same command "
                              "to resume")
        raise StageFailed(_failure(stage.name, plan.stage_dir, m, f"torchrun exited with status {rc}"))
    raise StageFailed(f"stage '{stage.name}' rolled back {relaunches} times (pretrain.spike.max_events)")


def _failure(name: str, stage_dir: Path, m: Manifest | None, fallback: str) -> str:
    error = (m.error if m is not None and m.error else None) or fallback
    where = stage_dir / TRACEBACK
    return f"stage '{name}' failed: {error}" + (f" (traceback: {where})" if where.exists() else "")


def _summary(metrics: dict[str, Any]) -> str:
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
    return ", ".join(f"{k}={v}" for k, v in list(flat.items())[:8])
