"""Benchmark: pretrain-stage throughput against a minimal PyTorch loop, and ZeRO 1/2/3 agreement on 2 processes.

    python scripts/bench_pretrain.py [--steps 60] [--warmup 10] [--model SPEC] [--seq-len 128] [--micro-batch 4]
        [--threads N] [--repeat 2] [--profile auto|always|never] [--stage-extra K=V ...]
        [--zero-steps 20] [--zero-init shared|fresh] [--zero-extra K=V ...] [--skip-zero] [--skip-single]
        [--out /tmp/bench_pretrain]

Prints its figures; it is not a test. Upstream stages (data, tokenizer, shards of the smoke recipe) are prepared once
in --out/upstream and reused (make-like). Then:

1. One process, no GPU, the same model, micro batch, seq_len, seed and batches:
   stage   the real pretrain stage: `kgov-train recipe=smoke stages=[pretrain] nproc_per_node=1 ...` (torchrun,
           HF Trainer, DeepSpeed; the recipe's ZeRO-2 runs as stage 0 in one process, common.deepspeed_config);
           tokens/s from its metrics.jsonl
   plain   a hand-written loop in this process: LlamaForCausalLM from kgov_train.train.model.build_pretrain_model
           (same config and seed), torch.optim.AdamW (fused, as the Trainer's default adamw_torch_fused; the same
           lr, weight decay and parameter groups, betas 0.9/0.999, eps 1e-8), the same lr schedule and gradient
           clipping, the same windows from the same shards in the same order (PackedTokens' resumable sampler);
           no DeepSpeed, no Trainer
   Both are timed the same way: wall time from the end of one optimizer step to the end of the next (data fetch,
   forward, backward, clip, optimizer step, loss.item() and, for the stage, its callbacks and logging), over the
   steps after --warmup; tokens per step = micro batch x seq_len. The median step gives the headline tokens/s
   (robust to other load on a shared machine), the total over the steady steps the mean. Both use --threads torch
   threads (default: what kgov_train/launch.py gives one process per node, cpu_count // 1; the stage gets it through
   OMP_NUM_THREADS, which launch.stage_env keeps when set). Runs alternate and the best of --repeat is kept.
   Below 0.9x (or with --profile always) the stage is rerun under torchrun with this script as the worker, which
   wraps timers around the Trainer's, DeepSpeed's (ZeRO-2 gradient bucketing and step) and kgov_train's step pieces
   and every callback, then runs kgov_train.cli as usual; the per-step times print next to the plain loop's.
   --stage-extra adds Hydra overrides to the stage runs for what-if experiments (e.g.
   deepspeed.zero_optimization.reduce_bucket_size=500000000, pretrain.logging_steps=10).
2. Two processes (torchrun, gloo): the stage under recipes/deepspeed/zero1, zero2, zero3 and zero3_offload for
   --zero-steps steps from the same seed; per-step losses side by side, the max abs difference (target <= 1e-3)
   and steady-state tokens/s (both ranks' tokens) per stage. With --zero-init shared (default) every run starts
   from one initial checkpoint (model.init_from), built from the seed exactly as the stage builds its fresh model
   without ZeRO-3; --zero-init fresh lets each run initialise its own model (under ZeRO-3 transformers draws the
   initial weights in another RNG order, so ZeRO-3's losses differ from the first step; see the report printed).

--model: a recipes/model/<name>.yaml name (tiny, 125m, ...) or comma-separated model.* keys applied on top of tiny,
e.g. hidden_size=256,num_hidden_layers=4. The default is a 1.3M-parameter Llama (hidden 128, 4 layers) whose step
takes ~50-100 ms on one core here.
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

DEFAULT_MODEL = "hidden_size=128,intermediate_size=352,num_hidden_layers=4,num_attention_heads=4,num_key_value_heads=2"
ZERO_RUNS = {"zero1": ("zero1", 1), "zero2": ("zero2", 2), "zero3": ("zero3", 3), "zero3_offload": ("zero3_offload", 3)}
ZERO_WARMUP = 3  # steps left out of the ZeRO runs' tokens/s


# ---------------------------------------------------------------------------------------------------------------------
# Config and runs
# ---------------------------------------------------------------------------------------------------------------------


def model_overrides(spec: str) -> list[str]:
    if "=" not in spec:
        if not (ROOT / "recipes" / "model" / f"{spec}.yaml").is_file():
            raise SystemExit(f"--model {spec}: no recipes/model/{spec}.yaml; give a name there or key=value pairs")
        return [f"model={spec}"]
    return ["model=tiny"] + [f"model.{kv.strip()}" for kv in spec.split(",") if kv.strip()]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    from kgov_train.cli import _setup

    _setup()
    with initialize_config_dir(config_dir=str(ROOT / "recipes"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def cli(overrides: list[str], log: Path, threads: int | None = None) -> float:
    """Run `kgov-train <overrides>` to completion (output to `log`); returns its wall time. threads: the workers'
    OMP_NUM_THREADS (None: kgov_train/launch.py's choice, cpu_count // nproc_per_node)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
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
    """metrics.jsonl `time` is stamped at each logged step's on_log: differences are whole step cycles (divided by
    the steps between two records when pretrain.logging_steps > 1)."""
    rows = sorted(rows, key=lambda r: r["step"])
    intervals = []
    for a, b in zip(rows, rows[1:]):
        if a["step"] >= warmup:
            intervals += [(b["time"] - a["time"]) / (b["step"] - a["step"])] * (b["step"] - a["step"])
    out = steady(intervals, tokens_per_step)
    late = [r for r in rows if r["step"] > warmup]
    out["logged_tok_s_median"] = statistics.median(r["tokens_per_sec"] for r in late)
    out["step_time_median"] = statistics.median(r["step_time"] for r in late if "step_time" in r)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The plain loop
# ---------------------------------------------------------------------------------------------------------------------


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
    groups = [{"params": [p for n, p in named if n in decay], "weight_decay": float(s.weight_decay)},
              {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=float(s.learning_rate), betas=(0.9, 0.999), eps=1e-8, fused=True)
    lr_sched = get_scheduler(sched.scheduler, opt, num_warmup_steps=sched.warmup_steps,
                             num_training_steps=sched.max_steps, scheduler_specific_kwargs=sched.scheduler_kwargs)
    mb = int(s.micro_batch_size)
    epochs = max(1, math.ceil(steps * mb / len(ds)))
    loader = torch.utils.data.DataLoader(ds, batch_size=mb, sampler=ds.sampler(0, 1, cfg.seed, 0, epochs),
                                         collate_fn=default_data_collator, drop_last=True)
    it = iter(loader)
    parts: dict[str, float] = defaultdict(float)
    intervals, losses = [], []
    clock = time.perf_counter
    t_prev = clock()
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
        if step > warmup:
            intervals.append(t6 - t_prev)
            for k, v in (("data (next batch)", t1 - t0), ("forward (LlamaForCausalLM)", t2 - t1),
                         ("backward", t3 - t2), ("clip_grad_norm_", t4 - t3),
                         ("AdamW.step + lr step + zero_grad", t5 - t4), ("loss.item()", t6 - t5)):
                parts[k] += v
        t_prev = t6
    n = len(intervals)
    return {"intervals": intervals, "losses": losses, "parts": {k: v / n for k, v in parts.items()},
            "parameters": sum(p.numel() for p in model.parameters())}


# ---------------------------------------------------------------------------------------------------------------------
# Profiling the stage: timers installed in the torchrun worker (this script with --_worker)
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
    ("    spike guard: engine._all_reduce (loss.item())", "kgov_train.train.engine:", "_all_reduce"),
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
    ("    ZeRO-1/2 optimizer.step", _Z12, "step"),
    ("      ZeRO-1/2 scaled_global_norm", _Z12, "scaled_global_norm"),
    ("      ZeRO-1/2 unscale_and_clip_grads", _Z12, "unscale_and_clip_grads"),
    ("      torch AdamW.step (fused, flat partition)", "torch.optim:AdamW", "step"),
    ("      ZeRO-1/2 _update_model_bit16_weights", _Z12, "_update_model_bit16_weights"),
    ("Trainer._track_num_input_tokens (include_num_input_tokens_seen)", "transformers.trainer:Trainer",
     "_track_num_input_tokens"),
    ("Trainer._clip_grad_norm", "transformers.trainer:Trainer", "_clip_grad_norm"),
    ("Trainer._get_grad_norm", "transformers.trainer:Trainer", "_get_grad_norm"),
    ("Trainer.floating_point_ops", "transformers.trainer:Trainer", "floating_point_ops"),
    ("Trainer._maybe_log_save_evaluate (loss gather, log)", "transformers.trainer:Trainer", "_maybe_log_save_evaluate"),
    ("  nested_gather (loss all-gather)", "transformers.trainer:", "nested_gather"),
    ("  Trainer.store_flos (flos broadcast)", "transformers.trainer:Trainer", "store_flos"),
    ("  Trainer.log", "transformers.trainer:Trainer", "log"),
    ("    MetricsCallback.on_log (metrics.jsonl, log line)", "kgov_train.train.callbacks:MetricsCallback", "on_log"),
]


def install_timers(T: Timers, out_json: Path) -> None:
    import importlib

    from transformers import trainer_callback

    for label, where, attr in PROFILE_POINTS:
        mod, _, cls = where.partition(":")
        m = importlib.import_module(mod)
        owner = getattr(m, cls) if cls else m
        if hasattr(owner, attr):
            _wrap(T, owner, attr, label)
    import transformers
    from transformers.data import data_collator

    transformers.default_data_collator = data_collator.default_data_collator  # the timed one, for pretrain.run

    def call_event(self, event, args, state, control, **kwargs):  # CallbackHandler.call_event, timed per callback
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
        if event == "on_log" and T.active and state.global_step == state.max_steps:
            close(state)
        return control

    def close(state) -> None:
        T.active, T.wall = False, time.perf_counter() - T.t0
        trainer = T.trainer
        if trainer.is_world_process_zero():
            import torch

            engine = trainer.model_wrapped
            bucket = engine.zero_reduce_bucket_size() if hasattr(engine, "zero_reduce_bucket_size") else None
            out_json.write_text(json.dumps({"steps": state.global_step - warmup, "wall": T.wall, "total": T.total,
                                            "calls": T.calls, "torch_threads": torch.get_num_threads(),
                                            "reduce_bucket_size": bucket}))

    trainer_callback.CallbackHandler.call_event = call_event

    import transformers.trainer as tt

    orig = tt.Trainer._maybe_log_save_evaluate
    warmup = int(os.environ["BENCH_WARMUP"])

    @functools.wraps(orig)
    def window(self, *a, **k):
        """The steady window: from the end of step `warmup` (its log included) to the last step's on_log, i.e. steps
        warmup+1 .. max_steps with their data and their logging, but not the checkpoint the Trainer saves after the
        last step."""
        result = orig(self, *a, **k)
        if self.state.global_step == warmup and not T.active and not T.wall:
            T.total.clear()
            T.calls.clear()
            T.trainer, T.active, T.t0 = self, True, time.perf_counter()
        return result

    tt.Trainer._maybe_log_save_evaluate = window


def worker(out_json: Path, overrides: list[str]) -> None:
    T = Timers()
    install_timers(T, out_json)
    from kgov_train.cli import main as cli_main

    sys.argv = ["kgov-train", *overrides]
    cli_main()


def profile_stage(overrides: list[str], out: Path, threads: int, warmup: int) -> dict:
    out_json = out / "profile.json"
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=1",
           str(Path(__file__).resolve()), "--_worker", str(out_json), "--", *overrides, "stages=[pretrain]",
           "force=true"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "DS_ACCELERATOR": "cpu", "BENCH_WARMUP": str(warmup)}
    log = out / "profile.log"
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    if rc != 0 or not out_json.is_file():
        raise SystemExit(f"profiled stage run failed (status {rc}); see {log}")
    return json.loads(out_json.read_text())


# ---------------------------------------------------------------------------------------------------------------------
# Report helpers
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


def fmt_ms(x: float) -> str:
    return f"{x * 1000:8.2f}"


def print_profile(prof: dict, plain: dict) -> None:
    n = prof["steps"]
    per_step = prof["wall"] / n
    print(f"\n  profiled stage run: {n} steady steps, {fmt_ms(per_step)} ms/step, torch.get_num_threads() = "
          f"{prof['torch_threads']} in the worker, DeepSpeed reduce_bucket_size {prof['reduce_bucket_size']} elements "
          "(timers add a few µs per call)")
    print(f"  {'stage piece (inclusive, ms per step)':68s} {'ms':>8s} {'calls/step':>10s}")
    labels = [lbl for lbl, _, _ in PROFILE_POINTS] + sorted(k for k in prof["total"] if k.startswith("callbacks:"))
    top = 0.0
    for label in labels:
        if label not in prof["total"]:
            continue
        ms = prof["total"][label] / n
        if not label.startswith(" "):
            top += ms
        print(f"  {label:68s} {fmt_ms(ms)} {prof['calls'][label] / n:10.1f}")
    print(f"  {'Trainer loop glue (step minus the top-level pieces above)':68s} {fmt_ms(per_step - top)}")
    print(f"\n  {'plain loop piece (ms per step)':68s} {'ms':>8s}")
    for k, v in plain["parts"].items():
        print(f"  {k:68s} {fmt_ms(v)}")
    print(f"  {'total (median step)':68s} {fmt_ms(statistics.median(plain['intervals']))}")


# ---------------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------------


def main() -> None:
    if "--_worker" in sys.argv:  # torchrun worker of the profiled stage run
        i = sys.argv.index("--_worker")
        out_json, rest = Path(sys.argv[i + 1]), sys.argv[i + 2:]
        worker(out_json, rest[1:] if rest[:1] == ["--"] else rest)
        return

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="steps of the single-process stage and plain loop")
    ap.add_argument("--warmup", type=int, default=10, help="steps left out of the single-process timing")
    ap.add_argument("--model", default=DEFAULT_MODEL, help="recipes/model name or model.* key=value list (see above)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for both (default: kgov_train/launch.py's OMP_NUM_THREADS for one process)")
    ap.add_argument("--repeat", type=int, default=2, help="alternating runs of each; the best is kept")
    ap.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                    help="the instrumented stage run: auto = when the stage is below 0.9x the plain loop")
    ap.add_argument("--stage-extra", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra Hydra overrides for the single-process stage runs only (what-if experiments, e.g. "
                         "deepspeed.zero_optimization.reduce_bucket_size=500000000 pretrain.logging_steps=10)")
    ap.add_argument("--zero-extra", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra Hydra overrides for the ZeRO runs only")
    ap.add_argument("--zero-steps", type=int, default=20)
    ap.add_argument("--zero-init", choices=("shared", "fresh"), default="shared")
    ap.add_argument("--skip-zero", action="store_true")
    ap.add_argument("--skip-single", action="store_true", help="only the ZeRO part")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_pretrain"))
    args = ap.parse_args()
    if args.steps <= args.warmup + 2:
        raise SystemExit("--steps must exceed --warmup by at least 3")

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // 1)  # launch.stage_env: cpu_count // nproc_per_node
    tokens_per_step = args.micro_batch * args.seq_len
    base = ["recipe=smoke", *model_overrides(args.model), f"pretrain.seq_len={args.seq_len}",
            f"pretrain.micro_batch_size={args.micro_batch}", "pretrain.eval_sequences=0"]

    import deepspeed  # noqa: F401  (versions for the header; also warms the import for the plain loop)
    import torch
    import transformers

    print(f"bench_pretrain: torch {torch.__version__}, transformers {transformers.__version__}, deepspeed "
          f"{deepspeed.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    t0 = time.time()
    upstream = prepare_upstream(out)
    print(f"upstream (data, tokenizer, shards of the smoke recipe): {upstream} ({time.time() - t0:.1f}s)")

    single = base + [f"pretrain.max_steps={args.steps}", f"pretrain.save_steps={args.steps * 10}", *args.stage_extra]
    cfg = compose([*single, f"run_dir={out / 'single'}"])
    if not args.skip_single:
        bench_single(args, cfg, single, upstream, out, threads, tokens_per_step)
    if not args.skip_zero:
        bench_zero(args, base, upstream, out, tokens_per_step, cfg.seed)


def bench_single(args, cfg, single: list[str], upstream: Path, out: Path, threads: int, tokens_per_step: int) -> None:
    print(f"\n== 1 process, {threads} torch thread(s) for both (OMP_NUM_THREADS for the stage, torch.set_num_threads "
          f"for the plain loop); model {args.model}; micro batch {args.micro_batch} x seq_len {args.seq_len} = "
          f"{tokens_per_step} tokens/step; {args.steps} steps, first {args.warmup} left out"
          + (f"; stage overrides {' '.join(args.stage_extra)}" if args.stage_extra else ""))
    stage_runs, plain_runs = [], []
    for r in range(args.repeat):
        plain = plain_loop(cfg, upstream, args.steps, args.warmup, threads)
        plain_runs.append({**steady(plain["intervals"], tokens_per_step), "run": plain})
        run_dir = run_dir_on(upstream, out / "single")
        wall = cli([*single, f"run_dir={run_dir}", "stages=[pretrain]", "nproc_per_node=1", "force=true"],
                   out / f"single_{r}.log", threads=threads)
        rows = read_rows(run_dir / "pretrain")
        fig = stage_figures(rows, args.warmup, tokens_per_step)
        fig.update(rows=rows, launch_wall=wall, manifest=manifest_metrics(run_dir / "pretrain"))
        stage_runs.append(fig)
        print(f"  run {r + 1}: plain {plain_runs[-1]['tok_s']:9.0f} tok/s   stage {fig['tok_s']:9.0f} tok/s "
              f"(launch {wall:.1f}s)   load {os.getloadavg()[0]:.2f}")
    best_plain = max(plain_runs, key=lambda x: x["tok_s"])
    best_stage = max(stage_runs, key=lambda x: x["tok_s"])
    ratio = best_stage["tok_s"] / best_plain["tok_s"]
    ratio_mean = best_stage["tok_s_mean"] / best_plain["tok_s_mean"]
    print(f"\n  {'':34s} {'tok/s (median step)':>20s} {'ms/step':>9s} {'tok/s (mean)':>13s}")
    print(f"  {'plain PyTorch loop':34s} {best_plain['tok_s']:20.0f} {best_plain['median_step_s'] * 1000:9.2f} "
          f"{best_plain['tok_s_mean']:13.0f}")
    print(f"  {'pretrain stage (Trainer+DeepSpeed)':34s} {best_stage['tok_s']:20.0f} "
          f"{best_stage['median_step_s'] * 1000:9.2f} {best_stage['tok_s_mean']:13.0f}")
    print(f"  ratio stage/plain: {ratio:.3f} (median step), {ratio_mean:.3f} (mean)   target >= 0.9: "
          f"{'met' if ratio >= 0.9 else 'NOT met'}")
    print(f"  stage's own figures: metrics.jsonl tokens_per_sec median {best_stage['logged_tok_s_median']:.0f}, "
          f"StepStats step_time median {best_stage['step_time_median'] * 1000:.2f} ms (on_step_begin..on_step_end), "
          f"manifest tokens_per_sec {best_stage['manifest']['tokens_per_sec']} (whole session, warm-up included)")
    stage_losses = {r["step"]: r["loss"] for r in best_stage["rows"]}
    plain_losses = best_plain["run"]["losses"]
    if len(stage_losses) == len(plain_losses):  # logging_steps=1: one loss per step on both sides
        diff = max(abs(stage_losses[i + 1] - x) for i, x in enumerate(plain_losses))
        print(f"  same computation check: max |loss stage - loss plain| over {len(plain_losses)} steps = {diff:.2e} "
              f"(step 1: {stage_losses[1]:.5f} vs {plain_losses[0]:.5f}); "
              f"{best_plain['run']['parameters']:,} parameters")

    if args.profile == "always" or (args.profile == "auto" and ratio < 0.9):
        print("\n== where the stage's step time goes (instrumented rerun of the same stage under torchrun)")
        run_dir = run_dir_on(upstream, out / "single")
        prof = profile_stage([*single, f"run_dir={run_dir}", "nproc_per_node=1"], out, threads, args.warmup)
        print_profile(prof, best_plain["run"])



def bench_zero(args, base: list[str], upstream: Path, out: Path, tokens_per_step: int, seed: int) -> None:
    zsteps = args.zero_steps
    zero_base = base + [f"pretrain.max_steps={zsteps}", f"pretrain.save_steps={zsteps * 10}", "nproc_per_node=2",
                        *args.zero_extra]
    extra = []
    if args.zero_init == "shared":
        init = build_init_checkpoint(compose([*zero_base, f"run_dir={out / 'zero'}"]), upstream, out / "zero_init")
        extra = [f"model.init_from={init}"]
    print(f"\n== ZeRO stages, 2 processes (torchrun, gloo), {zsteps} steps each, seed {seed}, "
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


if __name__ == "__main__":
    main()
