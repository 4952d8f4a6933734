"""DPO's held-out preference figures: TRL's reward accuracy/margin, and the policy's own preference before and after.

TRL's implicit reward is beta * (log pi(y|x) - log pi_ref(y|x)). Before training the policy is the reference, so every
reward is 0 and the reward accuracy is 0 by construction (ties count as wrong): it says nothing about the SFT model.
The figure that does is the policy's own preference: the share of held-out pairs whose chosen answer has a higher
log-probability (summed over its completion tokens) than the rejected one, and the mean margin. It is reported for
the model before training (the reference: the SFT model, or the base with the LoRA adapter disabled, or the
precomputed reference log-probs, which are all the same model) and for the model after training, from one
evaluation pass after training.

Use PreferenceTrainer instead of DPOTrainer, give it the held-out split as eval_dataset at construction (with
precompute_ref_log_probs TRL scores the reference on it then, before training), and call heldout_metrics(trainer)
on every rank after trainer.train() (all ranks take part in the forwards; under ZeRO-3 the parameters are gathered
layer by layer). Every rank gets the same dict. Under DeepSpeed it must not be called before train(): Trainer.evaluate
would leave an inference-only engine behind and train() then fails.

With precompute_ref_log_probs on more than one process the datasets must be file-backed in a folder every rank
reads (shared_dataset), see there.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from trl import DPOTrainer

from kgov_train.train.distributed import barrier

FIGURES = ("pairs", "reward_accuracy", "reward_margin", "logp_accuracy", "logp_margin", "logp_accuracy_before",
           "logp_margin_before")


class _LogProbRecorder:
    """Stands in for the policy model in DPOTrainer._compute_loss and keeps the per-token log-probabilities of its
    (single) fused-LM-head forward; everything else is the model's."""

    def __init__(self, model):
        self._model = model
        self.log_probs = None

    def __call__(self, *args, **kwargs):
        out = self._model(*args, **kwargs)
        self.log_probs = out.log_probs.detach()
        return out

    def __getattr__(self, name):
        return getattr(self._model, name)


class PreferenceTrainer(DPOTrainer):
    """DPOTrainer whose evaluation also collects, per held-out pair, the policy's and the reference's summed
    completion log-probabilities (no extra forward: the reference's are computed once per batch and handed to TRL's
    loss as if precomputed). heldout_metrics() turns them into the figures above."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pairs: list | None = None  # per eval batch: [n, 4] policy chosen/rejected, reference chosen/rejected

    def _compute_loss(self, model, inputs, return_outputs):
        if self.model.training or self._pairs is None:
            return super()._compute_loss(model, inputs, return_outputs)
        if self.ld_alpha is not None:
            raise ValueError("heldout_metrics: ld_alpha (length-desensitised log-probs) is not supported")
        if "ref_chosen_logps" not in inputs:
            # The reference's log-probs of this batch: the ref model, or the policy with its adapter disabled.
            ref = self.ref_model if self.ref_model is not None else model
            ref_chosen, ref_rejected = self.compute_ref_log_probs(ref, inputs)
            inputs = {**inputs, "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
        recorder = _LogProbRecorder(model)
        precompute = self.precompute_ref_logps
        self.precompute_ref_logps = True  # TRL reads the reference's log-probs from the batch instead of recomputing
        try:
            out = super()._compute_loss(recorder, inputs, return_outputs)
        finally:
            self.precompute_ref_logps = precompute
        seq_len = inputs["completion_mask"].size(1) - 1
        logps = recorder.log_probs[:, -seq_len:].sum(dim=1)  # zero outside the completion (labels -100)
        chosen, rejected = logps.chunk(2, dim=0)
        rows = torch.stack([chosen, rejected, inputs["ref_chosen_logps"].to(chosen),
                            inputs["ref_rejected_logps"].to(chosen)], dim=1)
        self._pairs.append(self.accelerator.gather_for_metrics(rows).float().cpu())  # drops the last batch's padding
        return out


def needs_reference_model(lora_enabled: bool, precompute_ref_log_probs: bool) -> bool:
    """Whether the dpo stage must load a second copy of the SFT model as ref_model. With LoRA the reference is the
    policy with its adapter disabled (pass ref_model=None and peft_config, not a PeftModel: TRL would then copy the
    adapter as a 'ref' adapter instead); with precomputed reference log-probs TRL scores the policy itself before
    training (ref_model=None)."""
    return not (lora_enabled or precompute_ref_log_probs)


def shared_dataset(dataset, folder, is_main: bool):
    """`dataset` written to `folder` (emptied first) by rank 0 and read back by every rank, file-backed.

    Needed with precompute_ref_log_probs on more than one process: TRL caches the reference log-probs in an arrow
    file next to the dataset's own cache files and every rank reads rank 0's file; an in-memory dataset
    (Dataset.from_list) has none, so each rank would look in its own temporary folder and rank 1 fails with
    FileNotFoundError. Emptying the folder also keeps a run from reusing another model's cached log-probs: TRL keys
    the cache by a hash of the model's state_dict, which under ZeRO-3 holds only empty partitions.
    """
    from datasets import load_from_disk

    folder = Path(folder)
    if is_main:
        if folder.exists():
            shutil.rmtree(folder)
        dataset.save_to_disk(str(folder))
    barrier()
    return load_from_disk(str(folder))


def heldout_metrics(trainer: PreferenceTrainer, eval_dataset=None) -> dict[str, Any]:
    """The held-out preference figures (every rank calls it; all get the same dict):

    pairs; reward_accuracy, reward_margin: TRL's implicit reward beta * (policy logp - reference logp), chosen vs
    rejected, per pair (ties count as wrong); logp_accuracy, logp_margin: share of pairs where the policy's summed
    completion log-probability of chosen exceeds rejected's, and the mean difference; logp_accuracy_before,
    logp_margin_before: the same for the reference, i.e. the model before training. TRL's own evaluation metrics
    (eval_loss, eval_rewards/accuracies averaged over batches, ...) are logged as usual (trainer.state.log_history).

    eval_dataset: the held-out split; None uses the one given to the trainer (required when the reference is
    precomputed for full fine-tuning: TRL refuses to score a new split after training then).
    """
    if not isinstance(trainer, PreferenceTrainer):
        raise TypeError("heldout_metrics needs a kgov_train.train.preference.PreferenceTrainer")
    if eval_dataset is None and trainer.eval_dataset is None:
        raise ValueError("heldout_metrics: no held-out split (give the trainer eval_dataset=...)")
    if trainer.is_deepspeed_enabled and trainer.deepspeed is None:
        # Trainer.evaluate would wrap the model in an inference-only DeepSpeed engine, and train() would then fail
        # ('NoneType' object has no attribute 'backward'). The figures before training are logp_*_before.
        raise RuntimeError("heldout_metrics: under DeepSpeed call it after trainer.train(); the model before "
                           "training is reported as logp_accuracy_before / logp_margin_before (the reference)")
    trainer._pairs = []
    try:
        if eval_dataset is None:
            trainer.evaluate()
        else:
            trainer.evaluate(eval_dataset)
        pairs = torch.cat(trainer._pairs) if trainer._pairs else torch.zeros(0, 4)
    finally:
        trainer._pairs = None
    return summarise(pairs, trainer.beta)


def summarise(pairs, beta: float) -> dict[str, Any]:
    """pairs: [n, 4] policy chosen, policy rejected, reference chosen, reference rejected (summed log-probs)."""
    n = int(pairs.shape[0])
    if n == 0:
        return {k: (0 if k == "pairs" else None) for k in FIGURES}
    c, r, rc, rr = pairs.double().unbind(1)
    reward_c, reward_r = beta * (c - rc), beta * (r - rr)

    def frac(x) -> float:
        return round(float(x.double().mean()), 6)

    return {
        "pairs": n,
        "reward_accuracy": frac(reward_c > reward_r),
        "reward_margin": frac(reward_c - reward_r),
        "logp_accuracy": frac(c > r),
        "logp_margin": frac(c - r),
        "logp_accuracy_before": frac(rc > rr),
        "logp_margin_before": frac(rc - rr),
    }
