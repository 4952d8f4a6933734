"""Fault injection for tests and drills, as a recipe callback (`pretrain.callbacks`): nothing in the production loss
path knows about it.

    pretrain.callbacks=[{_target_:tests.faults.SpikeAtSample,sample:160}]

makes the optimizer step that reads global sample 160 see its loss multiplied by 100 (a loss spike), through a
forward hook on the model; the pretrain trainer says which samples each step reads (PretrainTrainer.step_samples),
so a run resumed past a skipped data window never meets the fault again.
"""

from __future__ import annotations

from transformers import TrainerCallback


class SpikeAtSample(TrainerCallback):
    def __init__(self, sample: int, factor: float = 100.0):
        self.sample, self.factor = int(sample), float(factor)
        self.trainer = None
        self.armed = False

    def attach(self, trainer) -> None:
        self.trainer = trainer
        trainer.model.register_forward_hook(self._scale)

    def on_step_begin(self, args, state, control, **kwargs):
        self.armed = self.sample in self.trainer.step_samples(state.global_step + 1)

    def _scale(self, module, inputs, output):
        if self.armed and module.training and output.get("loss") is not None:
            output["loss"] = output["loss"] * self.factor
        return output
