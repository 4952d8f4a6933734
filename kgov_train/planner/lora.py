"""LoRA and QLoRA (`pretrain.lora`): trainable adapter parameters, the frozen base's bytes, their model states.

Trainable parameters, as peft counts them (get_nb_trainable_parameters):
    a LoRA target of in x out (Linear; Embedding: num_embeddings x dim)   r*(in + out)    per layer it occurs in
    a modules_to_save entry                                              its full size   (peft trains a copy of it)
The frozen base is every parameter of the model (modules_to_save keep their frozen original beside the copy).

Bytes per GPU. DeepSpeed casts every parameter to bf16 (engine._configure_distributed_model), so:
    frozen base, LoRA            2 B/param
    frozen base, QLoRA           NF4 with double quantisation for every Linear of the decoder layers (bitsandbytes
                                 leaves lm_head, the embedding and the norms in bf16): 4 bits of code + 8/64 + 32/(64*256)
                                 bits of constants = 4.127 bits (QLoRA paper, Dettmers et al. 2023, section 3: blocks
                                 of 64, fp8 constants in blocks of 256). The codes sit in bf16 containers
                                 (bnb_4bit_quant_storage, train/lora.py) that ZeRO-3 partitions; the constants are a
                                 quant_state, not a parameter, and stay whole on every GPU.
    trainable (adapters, modules_to_save)   mixed-precision Adam as for full training (memory.py): bf16 weight 2,
                                 bf16 gradient 2, fp32 master + m + v 12, the step's fp32 gradient 4, partitioned by
                                 ZeRO stage exactly as there: DeepSpeed's optimizer only holds parameters that require
                                 gradients, so ZeRO-1/2 leave the frozen base whole (replicated) and ZeRO-3 partitions it.
Forward/backward buffers on top: ZeRO-3 gathers one module at a time (the largest frozen one in its storage dtype, or
4 B x the largest trainable one: weight + gradient), and QLoRA dequantises each 4-bit weight to bf16 for its matmul
(forward and again in backward; one at a time): 2 B x the largest quantised Linear.
Activations: the base model's (memory.activation_bytes; bf16 compute either way) plus, per adapted module, the
dropout output and mask the adapter keeps (3 B x in, only with dropout > 0) and its rank-r intermediate (2 B x r),
per token, for every layer without checkpointing and for the one recomputed layer with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kgov_train.config.schema import LLAMA_LORA_TARGETS
from kgov_train.planner import memory as M
from kgov_train.planner.model import Shape

LORA_FROZEN_BYTES = 2  # bf16 frozen base
NF4_CODE_BYTES = 4 / 8
NF4_CONST_BYTES = (8 / 64 + 32 / (64 * 256)) / 8  # 0.127 bits: double-quantised absmax per 64 weights
NF4_BYTES = NF4_CODE_BYTES + NF4_CONST_BYTES  # 4.127 bits = 0.516 B per quantised parameter
DEQUANT_BYTES = 2  # the bf16 copy of one 4-bit weight during its matmul
DROPOUT_BYTES = 3  # bf16 dropout output + bool mask, per input feature and token
LAYER_LINEARS = LLAMA_LORA_TARGETS
NORMS = ("input_layernorm", "post_attention_layernorm")


@dataclass(frozen=True)
class Adapter:
    """The planner's view of a `<stage>.lora` section."""

    r: int = 16
    targets: tuple[str, ...] = LAYER_LINEARS
    modules_to_save: tuple[str, ...] = ()
    qlora: bool = False
    dropout: float = 0.05

    @property
    def method(self) -> str:
        return "qlora" if self.qlora else "lora"


def modules(shape: Shape) -> dict[str, tuple[int, int, int]]:
    """Leaf module name -> (in, out, how many) of a transformers Llama: what target_modules / modules_to_save name."""
    h, L, i = shape.hidden, shape.layers, shape.intermediate
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    return {"q_proj": (h, q, L), "k_proj": (h, kv, L), "v_proj": (h, kv, L), "o_proj": (q, h, L),
            "gate_proj": (h, i, L), "up_proj": (h, i, L), "down_proj": (i, h, L),
            "embed_tokens": (shape.vocab, h, 1), "lm_head": (h, shape.vocab, 1),
            "input_layernorm": (h, 1, L), "post_attention_layernorm": (h, 1, L), "norm": (h, 1, 1)}


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]  # peft matches a plain name against the module path's last parts


def saved_leaves(shape: Shape, names) -> list[str]:
    """The modules a modules_to_save list names: peft matches those by a plain suffix of the module path
    (utils/other.py _set_trainable), so `norm` is model.norm and every input_/post_attention_layernorm too."""
    out: dict[str, None] = {}
    for name in names:
        for leaf in modules(shape):
            if leaf == _leaf(name) or ("." not in name and leaf.endswith(name)):
                out.setdefault(leaf, None)
    return list(out)


def unknown(shape: Shape, names, saved: bool = False) -> list[str]:
    known = modules(shape)
    return [n for n in names if not (saved_leaves(shape, [n]) if saved else _leaf(n) in known)]


def adapter_params(shape: Shape, ad: Adapter) -> int:
    """LoRA A and B matrices: r*(in + out) per adapted module. Norms cannot be adapted (no Linear/Embedding)."""
    mods = modules(shape)
    return sum(ad.r * (mods[t][0] + mods[t][1]) * mods[t][2]
               for t in dict.fromkeys(map(_leaf, ad.targets)) if t not in ("norm",) + NORMS)


def saved_params(shape: Shape, ad: Adapter) -> int:
    """modules_to_save: peft trains a full copy of each (embed_tokens, lm_head after a vocabulary extension)."""
    mods = modules(shape)
    return sum(mods[m][0] * mods[m][1] * mods[m][2] for m in saved_leaves(shape, ad.modules_to_save))


def trainable_params(shape: Shape, ad: Adapter) -> int:
    return adapter_params(shape, ad) + saved_params(shape, ad)


def largest_trainable_module(shape: Shape, ad: Adapter) -> int:
    """Largest trainable module (ZeRO-3 gathers it with its gradient): peft's lora_A (r x in) and lora_B (out x r)
    are modules of their own; a modules_to_save copy is one whole."""
    mods = modules(shape)
    lora = [ad.r * max(mods[t][0], mods[t][1]) for t in map(_leaf, ad.targets) if t in mods]
    saved = [mods[m][0] * mods[m][1] for m in saved_leaves(shape, ad.modules_to_save)]
    return max(lora + saved + [0])


def quantised_params(shape: Shape, ad: Adapter) -> int:
    """Parameters bitsandbytes stores in 4 bits: every Linear of the decoder layers (lm_head is kept in bf16)."""
    if not ad.qlora:
        return 0
    mods = modules(shape)
    return sum(mods[n][0] * mods[n][1] * mods[n][2] for n in LAYER_LINEARS)


def largest_quantised(shape: Shape) -> int:
    mods = modules(shape)
    return max(mods[n][0] * mods[n][1] for n in LAYER_LINEARS)


def frozen_bytes(shape: Shape, ad: Adapter) -> tuple[float, float]:
    """(bytes ZeRO-3 can partition, bytes every GPU keeps whole) of the frozen base."""
    quant = quantised_params(shape, ad)
    return (NF4_CODE_BYTES * quant + LORA_FROZEN_BYTES * (shape.params - quant), NF4_CONST_BYTES * quant)


def largest_frozen_bytes(shape: Shape, ad: Adapter) -> float:
    """What ZeRO-3 gathers for one frozen module: the embedding/LM head in bf16, a decoder Linear in its storage."""
    layer_bytes = NF4_CODE_BYTES if ad.qlora else LORA_FROZEN_BYTES
    return max(LORA_FROZEN_BYTES * shape.embedding_params, layer_bytes * largest_quantised(shape))


def model_states(shape: Shape, ad: Adapter, dp: int, opt: M.Option) -> M.States:
    """memory.model_states over the trainable parameters, plus the frozen base and the forward/backward buffers."""
    st = M.model_states(trainable_params(shape, ad), largest_trainable_module(shape, ad), dp, opt)
    part, whole = frozen_bytes(shape, ad)
    n = max(1, dp)
    if opt.offload_param:  # ZeRO-3 parameter offload: the frozen partition lives in host memory as well
        on_gpu, host = whole, st.host + part / n
    else:
        on_gpu, host = (part / n if opt.stage == 3 else part) + whole, st.host
    working = st.working_set
    if opt.stage == 3:
        working = max(working, largest_frozen_bytes(shape, ad))
    if ad.qlora:
        working += DEQUANT_BYTES * largest_quantised(shape)
    return replace(st, params=st.params + on_gpu, working_set=working, host=host)


def extra_activation_bytes(shape: Shape, ad: Adapter, seq_len: int, micro_batch: int, checkpointing: bool) -> int:
    """The adapters' own saved tensors (dropout output and mask, the rank-r intermediate), per micro batch."""
    mods = modules(shape)
    per_layer = sum((DROPOUT_BYTES * mods[t][0] if ad.dropout > 0 else 0) + 2 * ad.r
                    for t in map(_leaf, ad.targets) if t in LAYER_LINEARS)
    layers = 1 if checkpointing else shape.layers
    return micro_batch * seq_len * per_layer * layers
