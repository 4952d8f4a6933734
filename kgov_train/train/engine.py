"""The pretrain stage's additions to the HF Trainer: exact data resume, loss-spike policy, preemption, step metrics.

- Data: the train windows come from PackedTokens' ResumableSampler, global sample g to rank g % world_size,
  so a run resumed at step C reads from sample C x samples_per_step on, exactly what the uninterrupted run
  read (plus any window a rollback skipped, kept in checkpoints/data_shift.json). The Trainer's own batch
  skipping is off (ignore_data_skip).
- Spikes: every micro batch's loss, averaged over ranks (all ranks must decide alike), is compared with its
  moving average before backward. A spike's micro batch contributes no gradient and the step runs at lr 0,
  so the weights do not move ("skip"); "rollback" also stops the run, which then restarts from the last
  checkpoint with the data from there to the spike skipped.
- Preemption: SIGTERM or SIGUSR1 (Slurm's warning before the time limit) sets a flag; at the next step
  boundary every rank saves a checkpoint and the stage ends as `interrupted`, to be resumed by a rerun.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import resource
import signal
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from kgov_train.train.callbacks import MetricsCallback
from kgov_train.train.distributed import all_reduce

log = logging.getLogger("kgov_train")

DATA_SHIFT = "data_shift.json"
SPIKES = "spikes.jsonl"


# ---------------------------------------------------------------------------------------------------------------------
# Data position
# ---------------------------------------------------------------------------------------------------------------------


def data_shift(ckpt_dir: Path, step: int | None = None) -> int:
    """Samples skipped by rollbacks at or before `step` (they move every later sample's position); all if None."""
    path = ckpt_dir / DATA_SHIFT
    if not path.is_file():
        return 0
    windows = json.loads(path.read_text(encoding="utf-8"))
    return sum(w["samples"] for w in windows if step is None or w["from_step"] <= step)


def add_data_shift(ckpt_dir: Path, from_step: int, samples: int, spike_step: int) -> None:
    path = ckpt_dir / DATA_SHIFT
    windows = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    windows.append({"from_step": from_step, "samples": samples, "spike_step": spike_step})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(windows, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------------------------
# Spikes
# ---------------------------------------------------------------------------------------------------------------------


class SpikeGuard:
    def __init__(self, policy: str, factor: float, ema_steps: int, min_steps: int, max_events: int, log_path: Path,
                 is_main: bool):
        if policy not in ("none", "skip", "rollback"):
            raise ValueError(f"pretrain.spike.policy: none, skip or rollback, got '{policy}'")
        self.policy, self.factor, self.min_steps, self.max_events = policy, factor, min_steps, max_events
        self.alpha = 2.0 / (max(ema_steps, 1) + 1)
        self.ema: float | None = None
        self.events = 0
        self.log_path, self.is_main = log_path, is_main
        self.pending: dict[str, Any] | None = None  # the spike of the step in progress

    def check(self, loss: float, step: int) -> bool:
        """True when this (rank-averaged) micro-batch loss is a spike to act on."""
        if self.policy == "none":
            return False
        spike = not math.isfinite(loss) or (
            self.ema is not None and step >= self.min_steps and loss > self.factor * self.ema)
        if not spike:
            self.ema = loss if self.ema is None else self.ema + self.alpha * (loss - self.ema)
            return False
        self.events += 1
        self.pending = {"step": step + 1, "loss": loss if math.isfinite(loss) else str(loss),
                        "moving_average": self.ema, "policy": self.policy, "event": self.events}
        if self.is_main:
            log.warning("pretrain: loss spike at step %d: %s vs moving average %s (policy %s, event %d of at most %d)",
                        step + 1, loss, self.ema, self.policy, self.events, self.max_events)
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(self.pending) + "\n")
        if self.events > self.max_events:
            raise RuntimeError(f"pretrain: {self.events} loss spikes, more than pretrain.spike.max_events="
                               f"{self.max_events}; the run is unstable (lower the learning rate, check the data "
                               f"around step {step + 1}; {self.log_path} lists them)")
        return True


# ---------------------------------------------------------------------------------------------------------------------
# The Trainer
# ---------------------------------------------------------------------------------------------------------------------


class PretrainTrainer(Trainer):
    """Set `start_step`, `start_sample` (and `samples_per_step`, `spike_guard`) before train()."""

    start_step: int = 0
    start_sample: int = 0
    samples_per_step: int = 1
    spike_guard: SpikeGuard | None = None
    rollback_at: dict[str, Any] | None = None
    flops_per_token: float = 0.0

    # Every rank's micro batch is micro_batch x seq_len tokens, so the count needs no collective per step (the
    # Trainer's gathers one); and the FLOPs per token are known once (the Trainer recounts the parameters per step).
    def _track_num_input_tokens(self, inputs):
        self.state.num_input_tokens_seen += int(inputs["input_ids"].numel()) * self.args.world_size

    def floating_point_ops(self, inputs) -> float:
        return self.flops_per_token * float(inputs["input_ids"].numel())

    def train(self, *args, **kwargs):
        """Trainer.train with what exists by now (libraries, model, data: ~600k objects) out of the garbage
        collector's sight (gc.freeze): the full collection at its start (accelerate's free_memory, ~0.3 s per rank
        on 2 CPU cores) and those during training look at new objects only. Unfrozen after, unless the process had
        frozen objects of its own before (distributed.import_training_libraries), which stay frozen."""
        if self.args.device.type == "cpu":
            keep_freed_memory()
        frozen_before = gc.get_freeze_count()
        gc.freeze()
        try:
            return super().train(*args, **kwargs)
        finally:
            if not frozen_before:
                gc.unfreeze()

    def get_train_dataloader(self):
        ds = self.train_dataset
        args = self.args
        rank, world = args.process_index, args.world_size
        # The Trainer builds the loader before it restores a checkpoint's step, and runs one "epoch" of it
        # until max_steps: so it holds max_steps steps' worth from start_sample on, over as many sampler
        # epochs as that takes (each a new seeded order of the windows).
        needed = self.start_sample + args.max_steps * self.samples_per_step
        epochs = max(1, math.ceil(needed / max(len(ds), 1)))
        sampler = ds.sampler(rank=rank, world_size=world, seed=args.data_seed, start_sample=self.start_sample,
                             epochs=epochs)
        per_rank = min(len(sampler), args.max_steps * args.per_device_train_batch_size * args.gradient_accumulation_steps)
        return torch.utils.data.DataLoader(
            ds, batch_size=args.per_device_train_batch_size, sampler=_Take(sampler, per_rank),
            collate_fn=self.data_collator, num_workers=args.dataloader_num_workers, drop_last=True)

    def step_samples(self, step: int) -> range:
        """The global samples (all ranks) optimizer step `step` (1-based) reads, data shifts included."""
        first = self.start_sample + (step - 1 - self.start_step) * self.samples_per_step
        return range(first, first + self.samples_per_step)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        guard = self.spike_guard
        if guard is None or not model.training:
            return out
        loss = out[0] if return_outputs else out
        mean = all_reduce(float(loss.detach().float().item()))
        if guard.check(mean, int(self.state.global_step)):
            for group in self.optimizer.param_groups:  # this step moves no weight (lr and weight decay scale by lr)
                group["lr"] = 0.0
            # zero gradients, also when the loss is not finite (0 x NaN gradients would be NaN)
            loss = loss * 0.0 if math.isfinite(mean) else sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)
            if guard.policy == "rollback" and self.rollback_at is None:
                self.rollback_at = dict(guard.pending or {})
        out = (loss, out[1]) if return_outputs else loss
        return out


class _Take(torch.utils.data.Sampler):
    def __init__(self, sampler, n: int):
        self.sampler, self.n = sampler, n

    def __iter__(self):
        for i, idx in enumerate(self.sampler):
            if i >= self.n:
                return
            yield idx

    def __len__(self) -> int:
        return self.n


# ---------------------------------------------------------------------------------------------------------------------
# Preemption and step metrics
# ---------------------------------------------------------------------------------------------------------------------


class Preemption(TrainerCallback):
    """SIGTERM/SIGUSR1 -> checkpoint at the next step boundary, then stop. Also stops for a spike rollback."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, trainer: PretrainTrainer):
        self.trainer = trainer
        self.signal: int | None = None
        self.stopped: str | None = None

    def install(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def on_step_end(self, args, state, control, **kwargs):
        got = all_reduce(float(self.signal or 0), op="max")  # one rank signalled is enough; all must stop alike
        if got:
            self.stopped = f"preempted by {signal.Signals(int(got)).name}"
            control.should_save = True
            control.should_training_stop = True
        elif self.trainer.rollback_at is not None:
            self.stopped = "rollback"
            control.should_save = False
            control.should_training_stop = True
        return control


def keep_freed_memory() -> bool:
    """Training on CPU: keep the memory torch frees for the next step instead of handing it back to the kernel.

    glibc gives freed blocks above its adaptive thresholds back to the kernel (large blocks are mmap'd, the heap
    top is trimmed), so the next step's tensors of the same sizes fault their pages in again: 1000-4000 page
    faults per step of the smoke model, 2-3 ms of a 15-18 ms step on 2 cores, and much of its run-to-run spread
    (the thresholds depend on the process's history). With blocks up to 32 MiB taken from the heap and the heap
    trimmed only above 1 GiB free, the steps run without page faults; the process keeps what it freed (up to
    ~1 GiB more resident memory). glibc's mallopt, through ctypes; returns whether both settings took."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 32 * 2**20)) & bool(mallopt(M_TRIM_THRESHOLD, 2**30))


class StepStats(TrainerCallback):
    """Per optimizer step: wall time, time waiting for data (fetch + everything between steps), peak memory.
    MetricsCallback adds the averages since its last record, and MFU, to metrics.jsonl."""

    def __init__(self):
        self._begin = self._end = None
        self.step_seconds: list[float] = []
        self.wait_seconds: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self._end is not None:
            self.wait_seconds.append(now - self._end)
        self._begin = now

    def on_step_end(self, args, state, control, **kwargs):
        self._end = time.perf_counter()
        if self._begin is not None:
            self.step_seconds.append(self._end - self._begin)

    def take(self) -> dict[str, float]:
        out = {}
        if self.step_seconds:
            out["step_time"] = round(sum(self.step_seconds) / len(self.step_seconds), 4)
        if self.wait_seconds:
            out["data_wait"] = round(sum(self.wait_seconds) / len(self.wait_seconds), 4)
        self.step_seconds, self.wait_seconds = [], []
        out["memory_gb"] = round(peak_memory_gb(), 3)
        return out


def peak_memory_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux: the process's peak RSS


def flops_per_token(parameters: int, layers: int, hidden: int, seq_len: int) -> float:
    """Training FLOPs per token: 6N for the weights (forward + backward) plus attention scores and values,
    6 x layers x seq_len x hidden (Chinchilla's approximation, causal masking ignored)."""
    return 6.0 * parameters + 6.0 * layers * seq_len * hidden


class PhaseMetrics(MetricsCallback):
    """metrics.jsonl across the phases of pretrain.phases (`phase`: a phases.Phase): `step` counts the stage's steps
    (earlier phases' included) and each row carries `phase` (its name), `phase_index` and `phase_step` (the phase
    Trainer's own step). Without phases it is the plain MetricsCallback."""

    def __init__(self, *args, phase, step_offset: int, token_offset: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.phase, self.step_offset, self.token_offset = phase, step_offset, token_offset

    def keeps(self, row: dict[str, Any], step: int) -> bool:  # earlier phases' rows, this phase's up to `step`
        if self.phase.name is None:
            return super().keeps(row, step)
        i = self.phase.index
        return row.get("phase_index", 0) < i or (row.get("phase_index") == i and row.get("phase_step", 0) <= step)

    def labelled(self, rec: dict[str, Any]) -> dict[str, Any]:
        if self.phase.name is None:
            return rec
        return {**rec, "step": self.step_offset + rec["step"], "tokens_seen": self.token_offset + rec["tokens_seen"],
                "phase": self.phase.name, "phase_index": self.phase.index, "phase_step": rec["step"]}

    def shown(self, rec: dict[str, Any]) -> tuple[str, int]:
        if self.phase.name is None:
            return super().shown(rec)
        return f"{self.stage} [{self.phase.name}]", rec["phase_step"]

