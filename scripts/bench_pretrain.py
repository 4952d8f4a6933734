"""Benchmark: where a training stage's wall time goes, its per-step cost against a minimal PyTorch loop, and ZeRO 1/2/3
agreement on 2 processes.

    python scripts/bench_pretrain.py [--model NAME|SPEC ...] [--steps N] [--warmup N] [--seq-len 128]
        [--micro-batch 4] [--threads N] [--repeat 3] [--profile auto|always|never] [--stage-extra K=V ...]
        [--startup-repeat 3] [--startup-extra K=V ...] [--cold-ops]
        [--zero-steps 20] [--zero-init shared|fresh] [--zero-extra K=V ...]
        [--skip-startup] [--skip-steps] [--skip-zero] [--out /tmp/bench_pretrain]

Prints its figures; it is not a test. Upstream stages (data, tokenizer, shards of the smoke recipe) are prepared once
in --out/upstream and reused (make-like). Then:

1. Start-up breakdown of a training stage: `kgov-train recipe=smoke stages=[pretrain] force=true` as a user runs it
   (the recipe's 2 processes, its 200 steps, checkpoints and validation), --startup-repeat times. Every process of
   the run (the chain, the torchrun agent, the workers) gets a tracer: a sitecustomize.py written to --out/tracer
   and put first on PYTHONPATH, which stamps the process start and the entry/exit of the functions in TRACE_POINTS
   (a few µs each) into one file per process. The phases of rank 0, from the chain's process start to its exit,
   print as the median over the runs with every run's figure; "non-training" is the total minus the training steps.
   --cold-ops adds one run with an empty TORCH_EXTENSIONS_DIR: what a JIT-built DeepSpeed op costs when its cache
   was built for another python/torch/venv (or never).
2. Per-step cost, for each --model (default: tiny, the smoke model, 0.35M parameters, and 25m, 25.7M), one
   process, no GPU, the same model, micro batch, seq_len, seed and batches:
   stage   the real pretrain stage under torchrun with this script as the worker, which adds one callback that
           reads the clock at every optimizer step's end and then runs kgov_train.cli as `kgov-train` does (HF
           Trainer, DeepSpeed; the recipe's ZeRO-2 runs as stage 0 in one process, arguments.deepspeed_config)
   plain   a hand-written loop in a python process of its own (this script with --_plain):
           LlamaForCausalLM from kgov_train.train.model.build_pretrain_model (same config and seed),
           torch.optim.AdamW as the stage's optimizer section makes it (adamw_torch or adamw_torch_fused; the same lr,
           betas, eps, weight decay and parameter groups), the same lr schedule and gradient clipping, the same
           windows from the same shards in the same order (PackedTokens' resumable sampler); no DeepSpeed, no Trainer
   plain+kept  the same loop with the malloc settings the stage makes on CPU (engine.keep_freed_memory: freed
           memory kept for the next step rather than faulted in again): the like-for-like baseline
   All are timed the same way: wall time from the end of one optimizer step to the end of the next (data fetch,
   forward, backward, clip, optimizer step, loss.item() and, for the stage, its callbacks and logging), over the
   steps after --warmup, at a high-resolution clock (metrics.jsonl's `time` has 1 ms resolution, too coarse for a
   ~15 ms step: the earlier figures of this script were whole milliseconds), with the minor page faults per step.
   All use --threads torch threads (default: what kgov_train/launch.py gives one process per node,
   cpu_count // 1; the stage gets it through OMP_NUM_THREADS). Each round runs the three, in alternating order;
   the ratios are given for the best run of each (the machine is shared: the best is the least disturbed) and as
   the median of the per-round ratios. Below 0.9x (or with --profile always) the stage is rerun with timers around
   the Trainer's, DeepSpeed's and kgov_train's step pieces and every callback, printed next to the plain loop's.
   --stage-extra adds Hydra overrides to the stage runs for what-if experiments (e.g. pretrain.logging_steps=10,
   pretrain.optimizer.name=adamw_torch_fused).
3. Two processes (torchrun, gloo): the stage under recipes/deepspeed/zero1, zero2, zero3 and zero3_offload for
   --zero-steps steps from the same seed; per-step losses side by side, the max abs difference (target <= 1e-3)
   and steady-state tokens/s (both ranks' tokens) per stage. With --zero-init shared (default) every run starts
   from one initial checkpoint (model.init_from), built from the seed exactly as the stage builds its fresh model
   without ZeRO-3; --zero-init fresh lets each run initialise its own model (under ZeRO-3 transformers draws the
   initial weights in another RNG order, so ZeRO-3's losses differ from the first step; see the report printed).

--model: a recipes/model/<name>.yaml name (tiny, 125m, ...), an alias of MODEL_ALIASES (25m) or comma-separated
model.* keys applied on top of tiny, e.g. hidden_size=256,num_hidden_layers=4; repeat --model for several.
--steps/--warmup apply to every model; without them each model gets its own (STEPS: 110/10 for tiny, 40/5 for 25m,
whose step takes ~350 ms on 2 cores).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_ALIASES = {
    "25m": "hidden_size=512,intermediate_size=1408,num_hidden_layers=8,num_attention_heads=8,num_key_value_heads=4",
}
STEPS = {"tiny": (110, 10), "25m": (40, 5)}  # (steps, warmup) per model unless --steps/--warmup
DEFAULT_STEPS = (60, 10)
ZERO_RUNS = {"zero1": ("zero1", 1), "zero2": ("zero2", 2), "zero3": ("zero3", 3), "zero3_offload": ("zero3_offload", 3)}
ZERO_WARMUP = 3  # steps left out of the ZeRO runs' tokens/s
TARGET = 0.9


# ---------------------------------------------------------------------------------------------------------------------
# Config and runs
# ---------------------------------------------------------------------------------------------------------------------


def model_overrides(spec: str) -> list[str]:
    spec = MODEL_ALIASES.get(spec, spec)
    if "=" not in spec:
        if not (ROOT / "recipes" / "model" / f"{spec}.yaml").is_file():
            raise SystemExit(f"--model {spec}: no recipes/model/{spec}.yaml nor alias {sorted(MODEL_ALIASES)}; give a "
                             "name there or key=value pairs")
        return [f"model={spec}"]
    return ["model=tiny"] + [f"model.{kv.strip()}" for kv in spec.split(",") if kv.strip()]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    from kgov_train.cli import _setup

    _setup()
    with initialize_config_dir(config_dir=str(ROOT / "recipes"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def cli(overrides: list[str], log: Path, threads: int | None = None, env_extra: dict | None = None) -> float:
    """Run `kgov-train <overrides>` to completion (output to `log`); returns its wall time. threads: the workers'
    OMP_NUM_THREADS (None: kgov_train/launch.py's choice, cpu_count // nproc_per_node)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    env.update(env_extra or {})
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.call([sys.executable, "-m", "kgov_train.cli", *overrides], stdout=f, stderr=subprocess.STDOUT,
                             cwd=ROOT, env=env)
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise SystemExit(f"kgov-train {' '.join(overrides)} failed with status {rc}; {log}:\n{tail}")
    return time.time() - t0


def prepare_upstream(out: Path) -> Path:
    up = out / "upstream"
    up.mkdir(parents=True, exist_ok=True)
    cli(["recipe=smoke", f"run_dir={up}", "stages=[data,tokenizer,shards]"], out / "upstream.log")
    return up


def run_dir_on(upstream: Path, run_dir: Path) -> Path:
    """A run folder whose tokenizer/ and shards/ are the prepared ones (symlinks; pretrain needs only these)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    for name in ("tokenizer", "shards"):
        (run_dir / name).symlink_to(upstream / name, target_is_directory=True)
    return run_dir


def read_rows(stage_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (stage_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]


def manifest_metrics(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "manifest.json").read_text())["metrics"]


def steady(intervals: list[float], tokens_per_step: int) -> dict[str, float]:
    """tokens/s from per-step wall times: median step (headline) and total (mean)."""
    return {"median_step_s": statistics.median(intervals), "tok_s": tokens_per_step / statistics.median(intervals),
            "tok_s_mean": tokens_per_step * len(intervals) / sum(intervals), "steps": len(intervals)}


def stage_figures(rows: list[dict], warmup: int, tokens_per_step: int) -> dict[str, float]:
    """From metrics.jsonl (the ZeRO runs): `time` is stamped at each logged step's on_log, differences are whole
    step cycles (divided by the steps between two records when pretrain.logging_steps > 1); 1 ms resolution."""
    rows = sorted(rows, key=lambda r: r["step"])
    intervals = []
    for a, b in zip(rows, rows[1:]):
        if a["step"] >= warmup:
            intervals += [(b["time"] - a["time"]) / (b["step"] - a["step"])] * (b["step"] - a["step"])
    return steady(intervals, tokens_per_step)


# ---------------------------------------------------------------------------------------------------------------------
# 1. Start-up breakdown: a tracer in every process of `kgov-train recipe=smoke stages=[pretrain]`
# ---------------------------------------------------------------------------------------------------------------------

# module: functions (Class.method) whose entry and exit are stamped. A point the code no longer has is left out
# (its phases print as "-").
TRACE_POINTS = {
    "kgov_train.pipeline": ["run_chain", "run_distributed_stage", "execute"],
    "kgov_train.launch": ["torchrun_stage"],
    "kgov_train.train.distributed": ["init_distributed"],
    "kgov_train.stages.pretrain": ["run"],
    "transformers.trainer": ["Trainer.train", "Trainer.training_step", "Trainer._save_checkpoint", "Trainer.evaluate"],
}

TRACER = r'''
"""Written by scripts/bench_pretrain.py: stamps this process's start and the entry/exit of TRACE_POINTS into
$KGOV_BENCH_TRACE/<pid>.jsonl. Inactive without that variable."""
import os, sys


def _chain_other_sitecustomize():
    import importlib.machinery, importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.machinery.PathFinder.find_spec(
        "sitecustomize", [p for p in sys.path if os.path.abspath(p or ".") != here])
    if spec is not None and spec.loader is not None:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)


def _install(trace_dir, points):
    import atexit, functools, importlib.abc, importlib.util, json, time
    out = open(os.path.join(trace_dir, "%d.jsonl" % os.getpid()), "a", buffering=1)
    rank = os.environ.get("RANK")

    def ev(kind, **kw):
        out.write(json.dumps({"t": time.time(), "ev": kind, "rank": rank, **kw}) + "\n")

    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    ev("start", at=time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK"), argv=sys.argv[:3])
    atexit.register(lambda: ev("atexit"))

    def wrap(owner, attr, label):
        orig = getattr(owner, attr, None)
        if orig is None or getattr(orig, "_bench_traced", False):
            return

        @functools.wraps(orig)
        def traced(*a, **k):
            ev("enter", fn=label)
            try:
                return orig(*a, **k)
            finally:
                ev("exit", fn=label)

        traced._bench_traced = True
        setattr(owner, attr, traced)

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in points:
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                for p in points[name]:
                    cls, _, meth = p.rpartition(".")
                    owner = getattr(module, cls, None) if cls else module
                    if owner is not None:
                        wrap(owner, meth, name + ":" + p)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Hook())


if os.environ.get("KGOV_BENCH_TRACE"):
    _install(os.environ["KGOV_BENCH_TRACE"], json_points)
_chain_other_sitecustomize()
'''


def write_tracer(out: Path) -> Path:
    d = out / "tracer"
    d.mkdir(parents=True, exist_ok=True)
    (d / "sitecustomize.py").write_text(TRACER.replace("json_points", repr(TRACE_POINTS)))
    return d


def read_trace(trace_dir: Path) -> dict[int, list[dict]]:
    procs = {}
    for p in trace_dir.glob("*.jsonl"):
        rows = []
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        if rows:
            procs[int(p.stem)] = rows
    return procs


def startup_phases(trace_dir: Path) -> tuple[list[tuple[str, float | None]], dict]:
    """The phases of one traced run (seconds; None where the trace lacks a point) and a few counts."""
    procs = read_trace(trace_dir)

    def has(rows, kind, fn=None):
        return any(r["ev"] == kind and (fn is None or r.get("fn") == fn) for r in rows)

    parent = next((rows for rows in procs.values() if has(rows, "enter", "kgov_train.pipeline:run_chain")), None)
    worker = next((rows for rows in procs.values() if rows[0].get("rank") == "0"), None)
    if parent is None or worker is None:
        raise SystemExit(f"{trace_dir}: no trace of the chain or of rank 0 (TRACE_POINTS out of date?)")

    def at(rows, kind, fn=None, last=False):
        ts = [r.get("at", r["t"]) for r in rows if r["ev"] == kind and (fn is None or r.get("fn") == fn)]
        return (max(ts) if last else min(ts)) if ts else None

    def spans(rows, fn):
        enters = [r["t"] for r in rows if r["ev"] == "enter" and r.get("fn") == fn]
        exits = [r["t"] for r in rows if r["ev"] == "exit" and r.get("fn") == fn]
        return list(zip(enters, exits))

    T = "transformers.trainer:Trainer."
    p0 = at(parent, "start")
    launch0 = at(parent, "enter", "kgov_train.launch:torchrun_stage")
    launch1 = at(parent, "exit", "kgov_train.launch:torchrun_stage", last=True)
    p1 = at(parent, "atexit") or at(parent, "exit", "kgov_train.pipeline:run_chain", last=True)
    w0 = at(worker, "start")
    rds = at(worker, "enter", "kgov_train.pipeline:run_distributed_stage")
    init1 = at(worker, "exit", "kgov_train.train.distributed:init_distributed")
    run0 = at(worker, "enter", "kgov_train.stages.pretrain:run")
    train0 = at(worker, "enter", T + "train")
    steps = spans(worker, T + "training_step")
    step0, stepN = (steps[0][0], steps[-1][1]) if steps else (None, None)
    saves = sum(b - a for a, b in spans(worker, T + "_save_checkpoint"))
    evals = sum(b - a for a, b in spans(worker, T + "evaluate"))
    exec1 = at(worker, "exit", "kgov_train.pipeline:execute", last=True)

    def d(a, b):
        return None if a is None or b is None else b - a

    training = None if step0 is None else stepN - step0 - saves
    total = d(p0, p1)
    phases = [
        ("chain process: interpreter, imports, Hydra compose, plan (hash inputs)", d(p0, launch0)),
        ("torchrun agent: start (imports torch), rendezvous, spawn workers", d(launch0, w0)),
        ("worker: interpreter, kgov_train.cli imports, Hydra compose", d(w0, rds)),
        ("worker: import torch/DeepSpeed(/Trainer), init_distributed", d(rds, init1)),
        ("worker: rank 0 plans, run-folder lock, broadcast", d(init1, run0)),
        ("pretrain.run: imports, tokenizer, data, model, Trainer", d(run0, train0)),
        ("Trainer.train -> first step (gc, DeepSpeed initialize)", d(train0, step0)),
        (f"training: {len(steps)} steps (checkpoint saves excluded)", training),
        ("checkpoint saves during training", saves if steps else None),
        ("after training: validation, final/ save, papers, output hashes", d(stepN, exec1)),
        ("  of which validation (Trainer.evaluate)", evals),
        ("worker exit, torchrun exit", d(exec1, launch1)),
        ("chain process: seal, exit", d(launch1, p1)),
        ("TOTAL wall (chain process start -> exit)", total),
        ("process start -> first training step", d(p0, step0)),
        ("non-training (total - training steps)", None if total is None or training is None else total - training),
    ]
    return phases, {"steps": len(steps), "ms_per_step": 1000 * training / len(steps) if steps else None}


def bench_startup(args, upstream: Path, out: Path) -> None:
    tracer = write_tracer(out)
    overrides = ["recipe=smoke", "stages=[pretrain]", "force=true", *args.startup_extra]
    env = {"PYTHONPATH": os.pathsep.join([str(tracer), *filter(None, [os.environ.get("PYTHONPATH")])])}
    runs = []
    for r in range(args.startup_repeat + (1 if args.cold_ops else 0)):
        cold = args.cold_ops and r == args.startup_repeat
        trace = out / "startup" / f"trace_{r}"
        shutil.rmtree(trace, ignore_errors=True)
        trace.mkdir(parents=True)
        run_env = {**env, "KGOV_BENCH_TRACE": str(trace)}
        if cold:
            ops = out / "startup" / "empty_torch_extensions"
            shutil.rmtree(ops, ignore_errors=True)
            ops.mkdir(parents=True)
            run_env["TORCH_EXTENSIONS_DIR"] = str(ops)
        run_dir = run_dir_on(upstream, out / "startup" / "run")
        cli([*overrides, f"run_dir={run_dir}"], out / f"startup_{r}.log", env_extra=run_env)
        phases, facts = startup_phases(trace)
        if cold:
            cold_phases = phases
        else:
            runs.append((phases, facts))
    print(f"\n== start-up breakdown of a training stage: kgov-train {' '.join(overrides)} (the recipe's "
          f"{compose(overrides).nproc_per_node} processes); rank 0's phases in seconds, median of {len(runs)} runs "
          f"[each run]; load average {os.getloadavg()[0]:.2f}")
    print(f"  {'phase':70s} {'median':>7s}   runs")
    for i, (label, _) in enumerate(runs[0][0]):
        vals = [phases[i][1] for phases, _ in runs]
        known = [v for v in vals if v is not None]
        med = f"{statistics.median(known):7.2f}" if known else f"{'-':>7s}"
        each = " ".join("-" if v is None else f"{v:.2f}" for v in vals)
        if args.cold_ops:
            c = cold_phases[i][1]
            each += f"   cold ops: {'-' if c is None else f'{c:.2f}'}"
        print(f"  {label:70s} {med}   [{each}]")
    ms = [f["ms_per_step"] for _, f in runs if f["ms_per_step"]]
    if ms:
        print(f"  training steps: {statistics.median(ms):.1f} ms each (median over runs, both ranks in step)")


# ---------------------------------------------------------------------------------------------------------------------
# 2. Per-step cost: the plain loop
# ---------------------------------------------------------------------------------------------------------------------


def minor_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def keep_freed_memory() -> bool:
    """What the stage does to malloc on CPU (kgov_train.train.engine.keep_freed_memory), for the plain loop."""
    try:
        from kgov_train.train.engine import keep_freed_memory as keep
    except ImportError:  # a tree without it: the same two mallopt calls
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
        return bool(mallopt(-3, 32 * 2**20)) & bool(mallopt(-1, 2**30))
    return keep()


def plain_worker(out_json: Path, overrides: list[str]) -> None:
    """The plain loop in a process of its own (this script with --_plain): nothing else ran in it before."""
    if os.environ.get("BENCH_KEEP_FREED") == "1" and not keep_freed_memory():
        raise SystemExit("mallopt failed")
    cfg = compose(overrides)
    r = plain_loop(cfg, Path(os.environ["BENCH_UPSTREAM"]), int(os.environ["BENCH_STEPS"]),
                   int(os.environ["BENCH_WARMUP"]), int(os.environ["BENCH_THREADS"]))
    out_json.write_text(json.dumps(r))


def plain_run(overrides: list[str], upstream: Path, out: Path, tag: str, steps: int, warmup: int, threads: int,
              keep_freed: bool) -> dict:
    out_json = out / f"{tag}.json"
    out_json.unlink(missing_ok=True)
    env = {**os.environ, "BENCH_UPSTREAM": str(upstream), "BENCH_STEPS": str(steps), "BENCH_WARMUP": str(warmup),
           "BENCH_THREADS": str(threads), "BENCH_KEEP_FREED": "1" if keep_freed else "0", "DS_ACCELERATOR": "cpu"}
    log = out / f"{tag}.log"
    with open(log, "w") as f:
        rc = subprocess.call([sys.executable, str(Path(__file__).resolve()), "--_plain", str(out_json), "--",
                              *overrides], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    if rc != 0 or not out_json.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise SystemExit(f"plain run failed (status {rc}); {log}:\n{tail}")
    return json.loads(out_json.read_text())


def plain_optimizer(s, params_groups):
    """torch.optim.AdamW as the stage's Trainer builds it from <stage>.optimizer."""
    import torch

    opt = s.optimizer
    name = str(opt.name)
    if name not in ("adamw_torch", "adamw_torch_fused"):
        raise SystemExit(f"pretrain.optimizer.name={name}: the plain loop mirrors adamw_torch and adamw_torch_fused only")
    return torch.optim.AdamW(params_groups, lr=float(s.learning_rate), betas=(float(opt.beta1), float(opt.beta2)),
                             eps=float(opt.eps), **({"fused": True} if name == "adamw_torch_fused" else {}))


def plain_loop(cfg, upstream: Path, steps: int, warmup: int, threads: int) -> dict:
    import torch
    from transformers import AutoTokenizer, default_data_collator, get_scheduler, set_seed
    from transformers.trainer_pt_utils import get_parameter_names

    from kgov_train.train.data import PackedTokens
    from kgov_train.train.model import build_pretrain_model
    from kgov_train.train.schedule import pretrain_schedule

    torch.set_num_threads(threads)
    s = cfg.pretrain
    tok_dir, shards_dir = upstream / "tokenizer", upstream / "shards"
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    sched = pretrain_schedule(s, 1)
    ds = PackedTokens(shards_dir, "train", s.seq_len)
    set_seed(cfg.seed)
    model, _ = build_pretrain_model(cfg, tokenizer, tok_dir)
    model.train()
    # the Trainer's parameter groups: no weight decay on norms and biases
    decay = set(get_parameter_names(model, [torch.nn.LayerNorm],
                                    [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if n in decay], "weight_decay": float(s.optimizer.weight_decay)},
              {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]
    opt = plain_optimizer(s, groups)
    lr_sched = get_scheduler(sched.scheduler, opt, num_warmup_steps=sched.warmup_steps,
                             num_training_steps=sched.max_steps, scheduler_specific_kwargs=sched.scheduler_kwargs)
    mb = int(s.micro_batch_size)
    epochs = max(1, math.ceil(steps * mb / len(ds)))
    loader = torch.utils.data.DataLoader(ds, batch_size=mb, sampler=ds.sampler(0, 1, cfg.seed, 0, epochs),
                                         collate_fn=default_data_collator, drop_last=True)
    it = iter(loader)
    parts: dict[str, float] = defaultdict(float)
    intervals, losses, faults = [], [], []
    clock = time.perf_counter
    t_prev, f_prev = clock(), minor_faults()
    for step in range(1, steps + 1):
        t0 = clock()
        batch = next(it)
        t1 = clock()
        loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        t2 = clock()
        loss.backward()
        t3 = clock()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(s.max_grad_norm))
        t4 = clock()
        opt.step()
        lr_sched.step()
        opt.zero_grad(set_to_none=True)
        t5 = clock()
        losses.append(loss.item())
        t6 = clock()
        f6 = minor_faults()
        if step > warmup:
            intervals.append(t6 - t_prev)
            faults.append(f6 - f_prev)
            for k, v in (("data (next batch)", t1 - t0), ("forward (LlamaForCausalLM)", t2 - t1),
                         ("backward", t3 - t2), ("clip_grad_norm_", t4 - t3),
                         (f"{type(opt).__name__}.step + lr step + zero_grad", t5 - t4), ("loss.item()", t6 - t5)):
                parts[k] += v
        t_prev, f_prev = t6, f6
    n = len(intervals)
    return {"intervals": intervals, "losses": losses, "parts": {k: v / n for k, v in parts.items()}, "faults": faults,
            "parameters": sum(p.numel() for p in model.parameters()),
            "optimizer": f"AdamW({'fused' if opt.defaults.get('fused') else 'default'})"}


# ---------------------------------------------------------------------------------------------------------------------
# 2. Per-step cost: the stage, with this script as its torchrun worker (a clock per step; timers with --profile)
# ---------------------------------------------------------------------------------------------------------------------


class Timers:
    def __init__(self):
        self.total: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.active = False
        self.t0 = 0.0
        self.wall = 0.0
        self.trainer = None


def _wrap(T: Timers, owner, name: str, label: str) -> None:
    orig = getattr(owner, name)

    @functools.wraps(orig)
    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            if T.active:  # calls that end inside the window (the final checkpoint save after it is left out)
                T.total[label] += time.perf_counter() - t
                T.calls[label] += 1

    setattr(owner, name, timed)


# (label, owner path, attribute); indentation in the label shows what each piece is part of
_Z12 = "deepspeed.runtime.zero.stage_1_and_2:DeepSpeedZeroOptimizer"
PROFILE_POINTS = [
    ("data: Trainer.get_batch_samples (next batch, label count)", "transformers.trainer:Trainer", "get_batch_samples"),
    ("  PackedTokens.__getitem__", "kgov_train.train.data:PackedTokens", "__getitem__"),
    ("  default_data_collator", "transformers.data.data_collator:", "default_data_collator"),
    ("Trainer.training_step", "transformers.trainer:Trainer", "training_step"),
    ("  PretrainTrainer.compute_loss", "kgov_train.train.engine:PretrainTrainer", "compute_loss"),
    ("    DeepSpeedEngine.forward", "deepspeed.runtime.engine:DeepSpeedEngine", "forward"),
    ("      LlamaForCausalLM.forward", "transformers.models.llama.modeling_llama:LlamaForCausalLM", "forward"),
    ("  DeepSpeedEngine.backward", "deepspeed.runtime.engine:DeepSpeedEngine", "backward"),
    ("    DeepSpeedEngine.allreduce_gradients (stage 0/1: buffered all-reduce)", "deepspeed.runtime.engine:DeepSpeedEngine",
     "allreduce_gradients"),
    ("    ZeRO-2 grad hook: reduce_independent_p_g_buckets_and_remove_grads", _Z12,
     "reduce_independent_p_g_buckets_and_remove_grads"),
    ("      ZeRO-2 reduce_ipg_grads (one per full bucket)", _Z12, "reduce_ipg_grads"),
    ("        ZeRO-2 average_tensor (bucket all-reduce)", _Z12, "average_tensor"),
    ("        ZeRO-2 copy_grads_in_partition", _Z12, "copy_grads_in_partition"),
    ("    ZeRO-2 independent_gradient_partition_epilogue", _Z12, "independent_gradient_partition_epilogue"),
    ("  DeepSpeedEngine.step", "deepspeed.runtime.engine:DeepSpeedEngine", "step"),
    ("    DeepSpeedEngine.clip_fp32_gradients (stage 0)", "deepspeed.runtime.engine:DeepSpeedEngine",
     "clip_fp32_gradients"),
    ("    stage 0, one process: engine.clip_like_deepspeed", "kgov_train.train.engine:", "clip_like_deepspeed"),
    ("    ZeRO-1/2 optimizer.step", _Z12, "step"),
    ("      ZeRO-1/2 scaled_global_norm", _Z12, "scaled_global_norm"),
    ("      ZeRO-1/2 unscale_and_clip_grads", _Z12, "unscale_and_clip_grads"),
    ("      torch AdamW.step", "torch.optim:AdamW", "step"),
    ("      ZeRO-1/2 _update_model_bit16_weights", _Z12, "_update_model_bit16_weights"),
    ("Trainer._track_num_input_tokens (include_num_input_tokens_seen)", "transformers.trainer:Trainer",
     "_track_num_input_tokens"),
    ("Trainer._clip_grad_norm", "transformers.trainer:Trainer", "_clip_grad_norm"),
    ("Trainer._get_grad_norm", "transformers.trainer:Trainer", "_get_grad_norm"),
    ("Trainer.floating_point_ops", "transformers.trainer:Trainer", "floating_point_ops"),
    ("Trainer._maybe_log_save_evaluate (loss gather, log)", "transformers.trainer:Trainer", "_maybe_log_save_evaluate"),
    ("  nested_gather (loss all-gather)", "transformers.trainer:", "nested_gather"),
    ("  Trainer.store_flos (flos broadcast)", "transformers.trainer:Trainer", "store_flos"),
    ("  PretrainTrainer.store_flos (no collective)", "kgov_train.train.engine:PretrainTrainer", "store_flos"),
    ("  Trainer.log", "transformers.trainer:Trainer", "log"),
    ("    MetricsCallback.on_log (metrics.jsonl, log line)", "kgov_train.train.callbacks:MetricsCallback", "on_log"),
]


def install_step_clock(out_json: Path, warmup: int, profile: bool) -> None:
    """Rank 0 writes to out_json, at the last step: the clock at every optimizer step's end (on_step_end, before the
    step's logging) and, with profile, the timers over steps warmup+1 .. max_steps."""
    import importlib

    from transformers import trainer_callback

    T = Timers()
    if profile:
        for label, where, attr in PROFILE_POINTS:
            mod, _, cls = where.partition(":")
            try:
                m = importlib.import_module(mod)
            except ImportError:
                continue
            owner = getattr(m, cls, None) if cls else m
            if owner is None or not hasattr(owner, attr):
                continue
            if mod.startswith("kgov_train") and isinstance(owner, type) and attr not in vars(owner):
                continue  # our override is not there: the inherited method has its own line already
            _wrap(T, owner, attr, label)
        import transformers
        from transformers.data import data_collator

        transformers.default_data_collator = data_collator.default_data_collator  # the timed one, for pretrain.run
    clock: list[float] = []
    faults: list[int] = []
    is_rank0 = int(os.environ.get("RANK", "0")) == 0

    def call_event(self, event, args, state, control, **kwargs):  # CallbackHandler.call_event, timed per callback
        if event == "on_step_end":
            clock.append(time.perf_counter())
            faults.append(minor_faults())
            if state.global_step == warmup and profile and not T.active and not T.wall:
                T.total.clear()
                T.calls.clear()
                T.trainer, T.active, T.t0 = self, True, clock[-1]
        for callback in self.callbacks:
            t = time.perf_counter()
            result = getattr(callback, event)(args, state, control, model=self.model,
                                              processing_class=self.processing_class, optimizer=self.optimizer,
                                              lr_scheduler=self.lr_scheduler, train_dataloader=self.train_dataloader,
                                              eval_dataloader=self.eval_dataloader, **kwargs)
            if T.active:
                label = f"callbacks: {type(callback).__name__}.{event}"
                T.total[label] += time.perf_counter() - t
                T.calls[label] += 1
            if result is not None:
                control = result
        if event == "on_step_end" and state.global_step == state.max_steps:
            if T.active:
                T.active, T.wall = False, clock[-1] - T.t0
            if is_rank0:
                import torch

                out_json.write_text(json.dumps({
                    "clock": clock, "faults": faults, "steps": state.global_step - warmup, "wall": T.wall, "total": T.total,
                    "calls": T.calls, "torch_threads": torch.get_num_threads()}))
        return control

    trainer_callback.CallbackHandler.call_event = call_event


def worker(out_json: Path, overrides: list[str]) -> None:
    install_step_clock(out_json, int(os.environ["BENCH_WARMUP"]), os.environ.get("BENCH_PROFILE") == "1")
    from kgov_train.cli import main as cli_main

    sys.argv = ["kgov-train", *overrides]
    cli_main()


def stage_run(overrides: list[str], out: Path, tag: str, threads: int, warmup: int, profile: bool = False) -> dict:
    """The stage in one process under torchrun, this script as the worker; returns its clock (and timers)."""
    out_json = out / f"{tag}.json"
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=1",
           str(Path(__file__).resolve()), "--_worker", str(out_json), "--", *overrides, "stages=[pretrain]",
           "nproc_per_node=1", "force=true"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "DS_ACCELERATOR": "cpu", "BENCH_WARMUP": str(warmup),
           "BENCH_PROFILE": "1" if profile else "0"}
    log = out / f"{tag}.log"
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    if rc != 0 or not out_json.is_file():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise SystemExit(f"stage run failed (status {rc}); {log}:\n{tail}")
    return json.loads(out_json.read_text())


def fmt_ms(x: float) -> str:
    return f"{x * 1000:8.2f}"


def print_profile(prof: dict, plain: dict) -> None:
    n = prof["steps"]
    per_step = prof["wall"] / n
    print(f"  profiled stage run: {n} steady steps, {fmt_ms(per_step)} ms/step, torch.get_num_threads() = "
          f"{prof['torch_threads']} in the worker (timers add a few µs per call)")
    print(f"  {'stage piece (inclusive, ms per step)':72s} {'ms':>8s} {'calls/step':>10s}")
    labels = [lbl for lbl, _, _ in PROFILE_POINTS] + sorted(k for k in prof["total"] if k.startswith("callbacks:"))
    top = 0.0
    for label in labels:
        if label not in prof["total"] or (label.startswith("callbacks:") and prof["total"][label] / n < 5e-6):
            continue
        ms = prof["total"][label] / n
        if not label.startswith(" "):
            top += ms
        print(f"  {label:72s} {fmt_ms(ms)} {prof['calls'][label] / n:10.1f}")
    print(f"  {'Trainer loop glue (step minus the top-level pieces above)':72s} {fmt_ms(per_step - top)}")
    print(f"\n  {'plain loop piece (ms per step)':72s} {'ms':>8s}")
    for k, v in plain["parts"].items():
        print(f"  {k:72s} {fmt_ms(v)}")
    print(f"  {'total (median step)':72s} {fmt_ms(statistics.median(plain['intervals']))}")


def bench_steps(args, upstream: Path, out: Path, threads: int) -> None:
    tokens_per_step = args.micro_batch * args.seq_len
    print(f"\n== per-step cost: the pretrain stage (Trainer + DeepSpeed, 1 process under torchrun) against a plain "
          f"PyTorch loop (a process of its own); {threads} torch thread(s) each; micro batch {args.micro_batch} x "
          f"seq_len {args.seq_len} = {tokens_per_step} tokens/step; {args.repeat} rounds of alternating runs"
          + (f"; stage overrides {' '.join(args.stage_extra)}" if args.stage_extra else ""))
    print("  plain: as a fresh python process runs it; plain+kept: with the stage's malloc settings on CPU "
          "(engine.keep_freed_memory), the like-for-like loop; faults: minor page faults per step (median)")
    summary = []
    for spec in args.model:
        steps, warmup = STEPS.get(spec, DEFAULT_STEPS)
        steps, warmup = args.steps or steps, args.warmup if args.warmup is not None else warmup
        if steps <= warmup + 2:
            raise SystemExit(f"--model {spec}: steps ({steps}) must exceed warmup ({warmup}) by at least 3")
        single = ["recipe=smoke", *model_overrides(spec), f"pretrain.seq_len={args.seq_len}",
                  f"pretrain.micro_batch_size={args.micro_batch}", "pretrain.eval_sequences=0",
                  f"pretrain.max_steps={steps}", f"pretrain.save_steps={steps * 10}", *args.stage_extra]
        cfg = compose([*single, f"run_dir={out / 'single'}"])
        tag = spec if "=" not in spec else "custom"
        print(f"\n  {tag}: {steps} steps, first {warmup} left out; optimizer {cfg.pretrain.optimizer.name}")
        rounds = []
        for r in range(args.repeat):
            kinds = ["plain", "kept", "stage"] if r % 2 == 0 else ["stage", "kept", "plain"]
            fig = {}
            for kind in kinds:
                if kind == "stage":
                    run_dir = run_dir_on(upstream, out / "single")
                    res = stage_run([*single, f"run_dir={run_dir}"], out, f"stage_{tag}_{r}", threads, warmup)
                    clock, flt = res["clock"], res["faults"]
                    intervals = [b - a for a, b in zip(clock[warmup - 1:], clock[warmup:])]
                    faults = [b - a for a, b in zip(flt[warmup - 1:], flt[warmup:])]
                    extra = {"rows": read_rows(run_dir / "pretrain")}
                else:
                    res = plain_run([*single, f"run_dir={out / 'single'}"], upstream, out, f"{kind}_{tag}_{r}", steps,
                                    warmup, threads, keep_freed=kind == "kept")
                    intervals, faults, extra = res["intervals"], res["faults"], {"run": res}
                fig[kind] = {**steady(intervals, tokens_per_step), "faults": statistics.median(faults), **extra}
            rounds.append(fig)
            print(f"    round {r + 1}: " + "   ".join(
                f"{k} {fig[k]['median_step_s'] * 1e3:8.2f} ms/step ({fig[k]['faults']:5.0f} faults)"
                for k in ("plain", "kept", "stage"))
                  + f"   stage/plain {fig['stage']['tok_s'] / fig['plain']['tok_s']:.3f}, stage/plain+kept "
                  f"{fig['stage']['tok_s'] / fig['kept']['tok_s']:.3f}   load {os.getloadavg()[0]:.2f}")
        best = {k: max((x[k] for x in rounds), key=lambda x: x["tok_s"]) for k in ("plain", "kept", "stage")}
        ratio = best["stage"]["tok_s"] / best["plain"]["tok_s"]
        ratio_kept = best["stage"]["tok_s"] / best["kept"]["tok_s"]
        per_round = statistics.median(x["stage"]["tok_s"] / x["plain"]["tok_s"] for x in rounds)
        per_round_kept = statistics.median(x["stage"]["tok_s"] / x["kept"]["tok_s"] for x in rounds)
        losses = {r["step"]: r["loss"] for r in best["stage"]["rows"]}
        plain_losses = best["plain"]["run"]["losses"]
        diff = max(abs(losses[i + 1] - x) for i, x in enumerate(plain_losses)) if len(losses) == len(plain_losses) \
            else None
        params = best["plain"]["run"]["parameters"]
        print(f"    best runs: plain {best['plain']['median_step_s'] * 1e3:.2f}, plain+kept "
              f"{best['kept']['median_step_s'] * 1e3:.2f}, stage {best['stage']['median_step_s'] * 1e3:.2f} ms/step; "
              f"stage/plain {ratio:.3f} (median step; {best['stage']['tok_s_mean'] / best['plain']['tok_s_mean']:.3f} "
              f"mean), stage/plain+kept {ratio_kept:.3f}; medians of the per-round ratios {per_round:.3f} and "
              f"{per_round_kept:.3f}; {params:,} parameters; max |loss stage - loss plain| "
              f"{'-' if diff is None else f'{diff:.2e}'} over {len(plain_losses)} steps ({best['plain']['run']['optimizer']})")
        summary.append((tag, params, best, ratio, per_round, ratio_kept, per_round_kept))
        if args.profile == "always" or (args.profile == "auto" and ratio < TARGET):
            print(f"\n  where the stage's step time goes ({tag}; an instrumented rerun of the same stage)")
            run_dir = run_dir_on(upstream, out / "single")
            prof = stage_run([*single, f"run_dir={run_dir}"], out, f"profile_{tag}", threads, warmup, profile=True)
            print_profile(prof, best["plain"]["run"])
    print(f"\n  {'model':8s} {'parameters':>12s} {'plain':>8s} {'plain+kept':>11s} {'stage':>8s}   "
          f"{'stage/plain: best, median':>26s}   {'stage/plain+kept: best, median':>31s}   (ms/step; target >= {TARGET})")
    for tag, params, best, ratio, per_round, ratio_kept, per_round_kept in summary:
        print(f"  {tag:8s} {params:12,d} {best['plain']['median_step_s'] * 1e3:8.2f} "
              f"{best['kept']['median_step_s'] * 1e3:11.2f} {best['stage']['median_step_s'] * 1e3:8.2f}   "
              f"{ratio:18.3f} {per_round:7.3f}   {ratio_kept:23.3f} {per_round_kept:7.3f}   "
              f"{'met' if ratio >= TARGET else 'NOT met'}")


# ---------------------------------------------------------------------------------------------------------------------
# 3. ZeRO stages on 2 processes
# ---------------------------------------------------------------------------------------------------------------------


def build_init_checkpoint(cfg, upstream: Path, dest: Path) -> Path:
    """The fresh model the stage builds without ZeRO-3 (same seed, same builder), saved for model.init_from."""
    from transformers import AutoTokenizer, set_seed
    from transformers.utils import logging as hf_logging

    from kgov_train.train.model import build_pretrain_model

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(upstream / "tokenizer")
    set_seed(cfg.seed)
    model, _ = build_pretrain_model(cfg, tokenizer, upstream / "tokenizer")
    if dest.exists():
        shutil.rmtree(dest)
    model.save_pretrained(dest)
    return dest


def bench_zero(args, upstream: Path, out: Path) -> None:
    zsteps = args.zero_steps
    tokens_per_step = args.micro_batch * args.seq_len
    zero_base = ["recipe=smoke", *model_overrides(args.model[0]), f"pretrain.seq_len={args.seq_len}",
                 f"pretrain.micro_batch_size={args.micro_batch}", "pretrain.eval_sequences=0",
                 f"pretrain.max_steps={zsteps}", f"pretrain.save_steps={zsteps * 10}", "nproc_per_node=2",
                 *args.zero_extra]
    cfg = compose([*zero_base, f"run_dir={out / 'zero'}"])
    extra = []
    if args.zero_init == "shared":
        init = build_init_checkpoint(cfg, upstream, out / "zero_init")
        extra = [f"model.init_from={init}"]
    print(f"\n== ZeRO stages, 2 processes (torchrun, gloo), model {args.model[0]}, {zsteps} steps each, seed {cfg.seed}, "
          f"{'one shared initial checkpoint (model.init_from)' if extra else 'each run initialises its own model'}; "
          f"tokens/s over both ranks, steps > {ZERO_WARMUP}"
          + (f"; overrides {' '.join(args.zero_extra)}" if args.zero_extra else ""))
    results = {}
    for name, (ds, stage) in ZERO_RUNS.items():
        run_dir = run_dir_on(upstream, out / "zero" / name)
        wall = cli([*zero_base, *extra, f"run_dir={run_dir}", "stages=[pretrain]", f"deepspeed={ds}",
                    f"pretrain.zero_stage={stage}", "force=true"], out / f"zero_{name}.log")
        rows = read_rows(run_dir / "pretrain")
        m = manifest_metrics(run_dir / "pretrain")
        results[name] = {"rows": rows, "wall": wall, "manifest": m,
                         **stage_figures(rows, ZERO_WARMUP, tokens_per_step * 2)}
        print(f"  {name:14s} done in {wall:5.1f}s (zero_stage {m['zero_stage']}, world size {m['world_size']})")
    names = list(results)
    print(f"\n  {'step':>4s} " + " ".join(f"{n:>14s}" for n in names))
    for i in range(zsteps):
        print(f"  {i + 1:4d} " + " ".join(f"{results[n]['rows'][i]['loss']:14.6f}" for n in names))
    worst = 0.0
    for n in names:
        d = max(abs(a["loss"] - b["loss"]) for a, b in zip(results[n]["rows"], results[names[0]]["rows"]))
        worst = max(worst, d)
        results[n]["max_diff"] = d
    print(f"\n  {'':14s} {'max |dloss| vs zero1':>21s} {'tok/s (median)':>15s} {'tok/s (mean)':>13s} "
          f"{'manifest tok/s':>15s} {'launch s':>9s}")
    for n in names:
        r = results[n]
        print(f"  {n:14s} {r['max_diff']:21.2e} {r['tok_s']:15.0f} {r['tok_s_mean']:13.0f} "
              f"{r['manifest']['tokens_per_sec']:15} {r['wall']:9.1f}")
    print(f"  max abs loss difference across stages: {worst:.2e}   target <= 1e-3: "
          f"{'met' if worst <= 1e-3 else 'NOT met'}")


# ---------------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------------


def main() -> None:
    for mode, run in (("--_worker", worker), ("--_plain", plain_worker)):  # a stage's torchrun worker, a plain loop
        if mode in sys.argv:
            i = sys.argv.index(mode)
            out_json, rest = Path(sys.argv[i + 1]), sys.argv[i + 2:]
            run(out_json, rest[1:] if rest[:1] == ["--"] else rest)
            return

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=None, metavar="NAME|SPEC",
                    help="model(s) of the per-step comparison (repeatable; default: tiny and 25m)")
    ap.add_argument("--steps", type=int, default=None, help="steps of each stage and plain run (default: per model)")
    ap.add_argument("--warmup", type=int, default=None, help="steps left out of the timing (default: per model)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for both (default: kgov_train/launch.py's OMP_NUM_THREADS for one process)")
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of each, per model")
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                    help=f"the instrumented stage run: auto = when the stage is below {TARGET}x the plain loop")
    ap.add_argument("--stage-extra", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra Hydra overrides for the per-step stage runs (what-if experiments)")
    ap.add_argument("--startup-repeat", type=int, default=3, help="traced runs of the smoke recipe's pretrain stage")
    ap.add_argument("--startup-extra", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra Hydra overrides for the start-up runs")
    ap.add_argument("--cold-ops", action="store_true",
                    help="one more start-up run with an empty TORCH_EXTENSIONS_DIR (JIT-built DeepSpeed ops rebuilt)")
    ap.add_argument("--zero-extra", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra Hydra overrides for the ZeRO runs only")
    ap.add_argument("--zero-steps", type=int, default=20)
    ap.add_argument("--zero-init", choices=("shared", "fresh"), default="shared")
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument("--skip-steps", action="store_true")
    ap.add_argument("--skip-zero", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_pretrain"))
    args = ap.parse_args()
    args.model = args.model or ["tiny", "25m"]

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // 1)  # launch.stage_env: cpu_count // nproc_per_node

    import deepspeed  # noqa: F401  (versions for the header)
    import torch
    import transformers

    print(f"bench_pretrain: torch {torch.__version__}, transformers {transformers.__version__}, deepspeed "
          f"{deepspeed.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    t0 = time.time()
    upstream = prepare_upstream(out)
    print(f"upstream (data, tokenizer, shards of the smoke recipe): {upstream} ({time.time() - t0:.1f}s)")
    if not args.skip_startup:
        bench_startup(args, upstream, out)
    if not args.skip_steps:
        bench_steps(args, upstream, out, threads)
    if not args.skip_zero:
        bench_zero(args, upstream, out)


if __name__ == "__main__":
    main()
