"""`kgov-train`: the Hydra app over recipes/ that runs the chain of stages.

    kgov-train recipe=smoke [overrides]                 run the recipe's stages here
    kgov-train submit recipe=X cluster=Y [--dry-run]    submit them to Slurm as chained jobs
    kgov-train [submit] -m recipe=smoke tokenizer.vocab_size=1000,1500
                                                        a sweep: one run per combination, runs/<recipe>-sweep/<N>,
                                                        identical stages computed once (the stage cache)
    kgov-train plan model=M cluster=C [nnodes=N] [plan.mfu=0.4] [--json]
                                                        memory per GPU and training time (kgov_train/planner)
    kgov-train compare RUN_DIR... | SWEEP_DIR [--out DIR] [--json]
                                                        runs side by side (kgov_train/compare)
    kgov-train assets pack SRC... --out BUNDLE | assets verify BUNDLE
                                                        carry models and data across the air gap (kgov_train/carry)
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from kgov_train import assets, offline, pipeline, stage_cache
from kgov_train.carry.cli import main as assets_main
from kgov_train.compare.cli import main as compare_main
from kgov_train.config.schema import register
from kgov_train.errors import LaunchError, ManifestError, RecipeError, RunFolderBusy, StageFailed, SubmitError
from kgov_train.launch import LOCK_ARG, PLANNED_ARG, ops_cache_env, under_torchrun
from kgov_train.run_folder import CHAIN
from kgov_train.planner.cli import main as plan_main
from kgov_train.slurm import submit

log = logging.getLogger("kgov_train")
# How this process was started: `submit` [--dry-run], or a torchrun child with the plan its parent made.
_MODE: dict = {"submit": False, "dry_run": False, "planned": None, "lock": None}
_TWINS: dict = {}  # submit -m: the first Slurm job of each stage identity (slurm.submit), across the sweep's jobs


def _setup() -> None:
    # The process entry point: the only place that sets the process environment (air-gapped defaults).
    offline.apply_defaults(os.environ, ops_cache_env())
    if not OmegaConf.has_resolver("kgov_root"):
        OmegaConf.register_new_resolver("kgov_root", lambda: str(assets.ROOT))
    register()


@hydra.main(config_path=str(assets.RECIPES), config_name="config", version_base="1.3")
def _app(cfg: DictConfig) -> None:
    overrides = list(HydraConfig.get().overrides.task)
    try:
        sweep = HydraConfig.get().mode == RunMode.MULTIRUN and not under_torchrun()
        if sweep:
            overrides = _sweep_job(cfg, overrides)
        pipeline.validate(cfg)
        if _MODE["submit"]:
            ids = submit(cfg, overrides, dry_run=_MODE["dry_run"], twins=_TWINS if sweep else None,
                         label=f"{HydraConfig.get().job.num}:" if sweep else "")
            print(" ".join(ids))
            if sweep and not _MODE["dry_run"]:
                stage_cache.record_sweep_job(Path(HydraConfig.get().sweep.dir), HydraConfig.get().job.num,
                                             list(HydraConfig.get().overrides.task), str(cfg.run_dir), slurm_jobs=ids)
        elif under_torchrun():
            # the trackers' files (wandb, tensorboard, mlflow) in the stage folder (a local parent set them already;
            # a Slurm job did not)
            offline.apply_defaults(os.environ, offline.tracker_env(Path(cfg.run_dir) / str(cfg.stages[0]),
                                                                   str(cfg.recipe_name)))
            pipeline.run_distributed_stage(cfg, planned=_MODE["planned"], lock_token=_MODE["lock"])
        else:
            done = pipeline.run_chain(cfg, overrides)
            log.info("done: %s", ", ".join(f"{m.stage} ({m.wall_seconds}s)" for m in done))
    except (RecipeError, ManifestError, LaunchError, StageFailed, SubmitError, RunFolderBusy) as e:
        # Expected failures get one clear message, not a traceback.
        log.error("%s", e)
        sys.exit(2 if isinstance(e, RecipeError) else 1)
    except Exception as e:
        # A training process: the stage's traceback.txt holds the details (see pipeline.execute).
        log.error("%s: %s", type(e).__name__, e)
        log.debug("details", exc_info=True)  # shown with hydra.verbose=kgov_train
        sys.exit(1)


def _sweep_job(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """A job of `kgov-train -m`: its run folder is its sweep subfolder (hydra.sweep.dir/<job number>) unless the
    command line names run_dir, and the stage cache is the sweep's (<sweep dir>/.stage-cache) unless it names
    cache_dir; both join the overrides, which the job's torchrun children and Slurm jobs get. The job is recorded
    in <sweep dir>/sweep.json."""
    hc = HydraConfig.get()
    given = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    sweep_dir = Path(str(hc.sweep.dir)).absolute()
    if "run_dir" not in given:
        cfg.run_dir = str(hc.runtime.output_dir)
        overrides = [*overrides, f"run_dir={cfg.run_dir}"]
    if "cache_dir" not in given and not cfg.get("cache_dir"):
        cfg.cache_dir = str(sweep_dir / stage_cache.SWEEP_CACHE)
        overrides = [*overrides, f"cache_dir={cfg.cache_dir}"]
    if not _MODE["dry_run"]:
        stage_cache.record_sweep_job(sweep_dir, int(hc.job.num), list(hc.overrides.task), str(cfg.run_dir))
    return overrides


def _config_dir() -> str | None:
    """A user's own recipe folder: Hydra's --config-dir/-cd DIR on the command line, else $KGOV_CONFIG_DIR."""
    argv, found = sys.argv[1:], None
    for i, a in enumerate(argv):
        if a in ("--config-dir", "-cd") and i + 1 < len(argv):
            found = argv[i + 1]
        elif a.startswith("--config-dir="):
            found = a.split("=", 1)[1]
    return found or os.environ.get("KGOV_CONFIG_DIR") or None


def _recipes() -> list[str]:
    # The shipped recipes, and those of the user's own folder (docs/recipes.md).
    dirs = [assets.RECIPES] + ([Path(_config_dir()).expanduser()] if _config_dir() else [])
    return sorted({p.stem for d in dirs for p in (d / "recipe").glob("*.yaml")})


def _usage() -> str:
    return f"""{__doc__.strip()}

Recipes here ({assets.RECIPES / 'recipe'}): {', '.join(_recipes())}

Keys used most (every key, its type and default: kgov-train recipe=X --cfg job):
  run_dir=runs/<recipe>  stages=[{",".join(CHAIN)}]  force=true  seed=42
  cache_dir=<folder>  (the stage cache: docs/operations.md)
  nproc_per_node=N  nnodes=N  model=tiny|125m|1b|7b|13b  cluster=<profile>  deepspeed=zero1|zero2|zero3
  data.inputs=[...]  data.dedup.near=true  data.pii.salt=${{oc.env:KGOV_PII_SALT}}
  pretrain.max_steps=N  sft.data=[...]  dpo.data=[...]

Sweeps: -m (--multirun) with comma-separated values runs each combination in turn into runs/<recipe>-sweep/<N>
(hydra.sweep.dir=... moves it; sweep.json lists the jobs), sharing identical stages through the stage cache.
Hydra's own options: kgov-train recipe=X --hydra-help. The README has the rest."""


def main() -> None:
    _setup()
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0)
    # Hydra would fail with a traceback without a recipe: say it in one line, with the choices.
    if args[0] not in ("plan", "compare", "assets") \
            and not any(a.split("=", 1)[0].lstrip("+~") == "recipe" for a in args) and "--hydra-help" not in args:
        print(f"kgov-train: recipe=<name> is required; recipes: {', '.join(_recipes())} "
              f"(kgov-train --help)", file=sys.stderr)
        sys.exit(2)
    # `plan` composes the recipe itself (kgov_train/planner/cli.py): no run, no stage validation, no recipe needed.
    if len(sys.argv) > 1 and sys.argv[1] == "plan":
        sys.exit(plan_main(sys.argv[2:]))
    # `compare` reads finished run folders (kgov_train/compare): no recipe, no Hydra.
    if args[0] == "compare":
        sys.exit(compare_main(args[1:]))
    # `assets` packs and verifies bundles carried across the air gap (kgov_train/carry): no recipe, no Hydra.
    if args[0] == "assets":
        sys.exit(assets_main(args[1:]))
    # `submit` and `--dry-run` are ours, not Hydra's: take them off argv before Hydra parses it.
    if len(sys.argv) > 1 and sys.argv[1] == "submit":
        _MODE["submit"] = True
        del sys.argv[1]
        if "--dry-run" in sys.argv:
            _MODE["dry_run"] = True
            sys.argv.remove("--dry-run")
    # A torchrun child of a local chain: the plan its parent made, its hold on the run folder (launch.torchrun_stage).
    for key, prefix in (("planned", PLANNED_ARG), ("lock", LOCK_ARG)):
        for a in [a for a in sys.argv[1:] if a.startswith(prefix)]:
            _MODE[key] = a[len(prefix):]
            sys.argv.remove(a)
    # The user's recipe folder reaches the stages' own processes (torchrun children, Slurm jobs), whose
    # arguments are the overrides only, as KGOV_CONFIG_DIR; each turns it back into --config-dir.
    if _config_dir():
        config_dir = os.path.abspath(os.path.expanduser(_config_dir()))
        if not any(a in ("--config-dir", "-cd") or a.startswith("--config-dir=") for a in sys.argv[1:]):
            sys.argv += ["--config-dir", config_dir]
        os.environ["KGOV_CONFIG_DIR"] = config_dir
    _app()


if __name__ == "__main__":
    main()
