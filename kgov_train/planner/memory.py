"""Memory per GPU of a DeepSpeed ZeRO run: model states, activations, a fixed overhead.

Model states, bytes per parameter P (mixed-precision Adam; Rajbhandari et al. 2020, "ZeRO", section 3.1):
    bf16 parameters 2, bf16 gradients 2, fp32 master weights + Adam m + v 12  (the 2 + 2 + 12 split)
    ZeRO-1 divides the 12 by the data-parallel size N, ZeRO-2 also the gradients, ZeRO-3 also the parameters.
Two DeepSpeed facts on top of the split:
    - For the optimizer step DeepSpeed upcasts the gradient partition to fp32 (4 bytes/param, stage_1_and_2.py
      step and stage3.py _prepare_fp32_grad_for_sub_group; ZeRO-3 one sub_group of <= 1e9 params at a time).
      It exists only during the step, when activations are gone.
    - ZeRO-3 gathers one module at a time: its bf16 weights and its full bf16 gradient before the
      reduce-scatter, 4 bytes x the largest module (the embedding or LM head in a Llama). Only in forward/backward.
    Optimizer offload keeps master weights, moments and fp32 gradients in host memory, and the bf16 gradients
    stream through reduce buckets to the host (none persist on the GPU); parameter offload (ZeRO-3) keeps the
    bf16 partition there too. Peak model states = max(forward/backward states, optimizer-step states).

Activations per sequence of s tokens, bf16, after Korthikanti et al. 2022, "Reducing Activation Recomputation
in Large Transformer Models" (arXiv:2205.05198), section 4, without tensor/sequence parallelism:
    per layer                       s*h*(34 + 5*a*s/h)  bytes
    with SDPA / flash attention     s*h*34  (the 5*a*s^2 softmax-score term is never materialised)
    full checkpointing              2*s*h per layer (each layer's input) + one layer's full activations,
                                    rebuilt during its recompute
    output layer                    10*s*V: bf16 logits (2), the fp32 copy transformers' loss makes (4), the fp32
                                    log-softmax cross_entropy keeps (4); the paper counts the fp32 4*s*V only.
The 34 is a GPT block (4h GeLU MLP, dropout); a Llama block (SwiGLU at ~2.7h, no dropout, GQA) comes out close.
Everything scales linearly with the micro batch b.
"""

from __future__ import annotations

from dataclasses import dataclass

from kgov_train.planner.model import Shape

GIB = 2**30
PARAM_BYTES, GRAD_BYTES, OPTIM_BYTES = 2, 2, 12
FP32_GRAD_BYTES = 4
ZERO3_WORKING_SET_BYTES = 4  # gathered bf16 weights + bf16 gradient of the module in flight
ZERO3_SUB_GROUP_SIZE = 1_000_000_000  # DeepSpeed's default zero_optimization.sub_group_size
ACT_BYTES_PER_LAYER_TOKEN_HIDDEN = 34
ACT_SCORE_BYTES = 5  # x a*s^2 per layer: softmax input, output and dropout mask (eager attention only)
CKPT_BYTES_PER_LAYER_TOKEN_HIDDEN = 2  # the bf16 layer input kept per checkpointed layer
LOGIT_BYTES = 10
# CUDA context, NCCL buffers, DeepSpeed reduce/prefetch buckets and allocator fragmentation: not modelled, reserved.
OVERHEAD_GIB = 4.0


@dataclass(frozen=True)
class Option:
    label: str
    stage: int
    offload_optimizer: bool = False
    offload_param: bool = False


OPTIONS = [
    Option("ZeRO-0 (DDP)", 0),
    Option("ZeRO-1", 1),
    Option("ZeRO-2", 2),
    Option("ZeRO-2 +offload opt", 2, offload_optimizer=True),
    Option("ZeRO-3", 3),
    Option("ZeRO-3 +offload opt", 3, offload_optimizer=True),
    Option("ZeRO-3 +offload opt+param", 3, offload_optimizer=True, offload_param=True),
]


@dataclass(frozen=True)
class States:
    """Model-state bytes on one GPU (and offloaded to host) for one ZeRO option."""

    params: float
    grads: float
    optim: float  # fp32 master + m + v
    fp32_grads: float  # optimizer step only
    working_set: float  # forward/backward only: ZeRO-3's gathered module, QLoRA's dequantised weight (lora.py)
    host: float  # offloaded to host memory, per GPU

    @property
    def fwd_bwd(self) -> float:
        return self.params + self.grads + self.optim + self.working_set

    @property
    def step(self) -> float:
        return self.params + self.grads + self.optim + self.fp32_grads

    @property
    def peak(self) -> float:
        return max(self.fwd_bwd, self.step)


def model_states(params: int, largest_layer: int, dp: int, opt: Option) -> States:
    if opt.offload_param and opt.stage != 3:
        raise ValueError("parameter offload needs ZeRO-3")
    P, n = float(params), max(1, dp)
    part = P / n
    p = 0.0 if opt.offload_param else PARAM_BYTES * (part if opt.stage == 3 else P)
    g = 0.0 if opt.offload_optimizer else GRAD_BYTES * (part if opt.stage >= 2 else P)
    o = 0.0 if opt.offload_optimizer else OPTIM_BYTES * (part if opt.stage >= 1 else P)
    step_elems = (part if opt.stage >= 1 else P) if opt.stage < 3 else min(part, ZERO3_SUB_GROUP_SIZE)
    f = 0.0 if opt.offload_optimizer else FP32_GRAD_BYTES * step_elems
    w = ZERO3_WORKING_SET_BYTES * largest_layer if opt.stage == 3 else 0.0
    host = 0.0
    if opt.offload_optimizer:
        host += (OPTIM_BYTES + FP32_GRAD_BYTES) * part
    if opt.offload_param:
        host += PARAM_BYTES * part
    return States(p, g, o, f, w, host)


def activation_bytes(shape: Shape, seq_len: int, micro_batch: int, checkpointing: bool, score_term: bool) -> int:
    s, h, b = seq_len, shape.hidden, micro_batch
    layer = ACT_BYTES_PER_LAYER_TOKEN_HIDDEN * s * h + (ACT_SCORE_BYTES * shape.heads * s * s if score_term else 0)
    if checkpointing:  # every layer's input, plus the one layer being recomputed
        layers = CKPT_BYTES_PER_LAYER_TOKEN_HIDDEN * s * h * shape.layers + layer
    else:
        layers = layer * shape.layers
    return b * (layers + LOGIT_BYTES * s * shape.vocab)


def total_bytes(states: States, activations: float, overhead_gib: float = OVERHEAD_GIB) -> float:
    # Activations live through forward/backward; the fp32 gradients only during the step, after they are freed.
    return max(states.fwd_bwd + activations, states.step) + overhead_gib * GIB


def max_micro_batch(states: States, per_sequence: float, memory_bytes: float,
                    overhead_gib: float = OVERHEAD_GIB) -> int:
    """Largest b with total_bytes(states, b * per_sequence) <= memory_bytes (0: not even b = 1)."""
    free = memory_bytes - overhead_gib * GIB
    if states.step > free or per_sequence <= 0:
        return 0
    return max(0, int((free - states.fwd_bwd) // per_sequence))
