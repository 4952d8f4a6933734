"""The plan of one composed recipe: numbers (`make_plan`) and the table printed by `kgov-train plan` (`render`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig

from kgov_train.errors import RecipeError
from kgov_train.run_folder import read_json
from kgov_train.planner import lora as LO
from kgov_train.planner import memory as M
from kgov_train.planner.model import CHINCHILLA_TOKENS_PER_PARAM, Shape
from kgov_train.train.model import round_up
from kgov_train.train.schedule import ScheduleError, budget_tokens

NO_SCORE_ATTENTION = ("sdpa", "flash_attention_2", "flash_attention_3")  # fused kernels: no s^2 score tensor


@dataclass
class Settings:
    """`plan.*` overrides: not recipe keys, so the schema does not know them."""

    mfu: float = 0.40
    vocab_size: Optional[int] = None  # null: tokenizer.vocab_size rounded up to model.pad_vocab_multiple
    overhead_gb: float = M.OVERHEAD_GIB


LLAMA_STYLE = ("llama", "mistral", "qwen2")  # model_types whose shape Shape counts


def folder_shape(folder: Path, key: str, vocab_size: Optional[int] = None) -> Shape:
    """The shape of a local model folder's config.json (a Llama-style model); problems name `key`."""
    path = Path(folder) / "config.json"
    try:
        c = read_json(path)
    except ValueError as e:
        raise RecipeError(f"{key}: {e}") from None
    if not isinstance(c, dict):
        raise RecipeError(f"{key}: {path} is missing; the planner reads the model's shape from it")
    if c.get("model_type") not in LLAMA_STYLE:
        raise RecipeError(f"{key}: {path} is a '{c.get('model_type')}' model; the planner counts Llama-style "
                          f"models only ({', '.join(LLAMA_STYLE)})")
    heads = int(c["num_attention_heads"])
    return Shape(vocab=int(vocab_size or c["vocab_size"]), hidden=int(c["hidden_size"]),
                 intermediate=int(c["intermediate_size"]), layers=int(c["num_hidden_layers"]), heads=heads,
                 kv_heads=int(c.get("num_key_value_heads") or heads), tied=bool(c.get("tie_word_embeddings", False)))


def base_shape(cfg: DictConfig, vocab_size: Optional[int] = None) -> Shape | None:
    """On a route from an imported base (cpt, finetune): the shape of base.path's config.json (None on scratch); an
    extended tokenizer (tokenizer.mode=extend) grows the vocabulary to tokenizer.vocab_size."""
    if str(cfg.route) == "scratch" or not cfg.base.path:
        return None
    shape = folder_shape(Path(str(cfg.base.path)), "base.path", vocab_size)
    if vocab_size is None and str(cfg.route) == "cpt" and cfg.tokenizer.mode == "extend":
        shape = dataclasses.replace(shape, vocab=max(shape.vocab, int(cfg.tokenizer.vocab_size)))
    return shape


def shape_of(cfg: DictConfig, vocab_size: Optional[int] = None) -> Shape:
    """The trained model's shape: the imported base's (base_shape), else the recipe's model section's."""
    base = base_shape(cfg, vocab_size)
    if base is not None:
        return base
    m = cfg.model
    if m.architecture != "llama":
        raise RecipeError(f"model.architecture: the planner counts Llama models only, got '{m.architecture}'")
    if m.hidden_size % m.num_attention_heads:
        raise RecipeError("model.hidden_size: must be divisible by model.num_attention_heads")
    kv = m.num_key_value_heads or m.num_attention_heads
    if m.num_attention_heads % kv:
        raise RecipeError(f"model.num_key_value_heads: {kv} does not divide "
                          f"model.num_attention_heads={m.num_attention_heads}")
    # As the pretrain stage builds it (train/model.py llama_config); the real size is len(tokenizer).
    vocab = vocab_size or round_up(cfg.tokenizer.vocab_size, m.pad_vocab_multiple)
    return Shape(vocab=int(vocab), hidden=m.hidden_size, intermediate=m.intermediate_size, layers=m.num_hidden_layers,
                 heads=m.num_attention_heads, kv_heads=kv, tied=bool(m.tie_word_embeddings))


def check(cfg: DictConfig, st: Settings) -> None:
    if not 0 < st.mfu <= 1:
        raise RecipeError(f"plan.mfu: in (0, 1], got {st.mfu}")
    if st.vocab_size is not None and st.vocab_size < 1:
        raise RecipeError(f"plan.vocab_size: must be >= 1, got {st.vocab_size}")
    if st.overhead_gb < 0:
        raise RecipeError(f"plan.overhead_gb: must be >= 0, got {st.overhead_gb}")
    p = cfg.pretrain
    for key, value in (("nnodes", cfg.nnodes), ("pretrain.seq_len", p.seq_len),
                       ("pretrain.micro_batch_size", p.micro_batch_size),
                       ("pretrain.gradient_accumulation_steps", p.gradient_accumulation_steps)):
        if value < 1:
            raise RecipeError(f"{key}: must be >= 1, got {value}")
    if p.tokens is not None and p.tokens <= 0:
        raise RecipeError(f"pretrain.tokens: must be > 0 (or null: the Chinchilla budget), got {p.tokens}")
    if p.get("flops") is not None:
        try:
            budget_tokens(p, 1)  # both keys, phases, sign; the model's N comes in compute()
        except ScheduleError as e:
            raise RecipeError(str(e)) from None
    if base_shape(cfg) is None and p.seq_len > cfg.model.max_position_embeddings:  # a base has its own limit
        raise RecipeError(f"pretrain.seq_len: {p.seq_len} exceeds "
                          f"model.max_position_embeddings={cfg.model.max_position_embeddings}")


def adapter_of(cfg: DictConfig, shape: Shape) -> Optional[LO.Adapter]:
    """pretrain.lora as the planner sees it; None: full training."""
    lo = cfg.pretrain.get("lora")
    if lo is None or not lo.enabled:
        if lo is not None and lo.qlora:
            raise RecipeError("pretrain.lora.qlora=true trains a LoRA adapter on a 4-bit base: set "
                              "pretrain.lora.enabled=true as well")
        return None
    ad = LO.Adapter(r=int(lo.r), targets=tuple(map(str, lo.target_modules)),
                    modules_to_save=tuple(map(str, lo.modules_to_save)), qlora=bool(lo.qlora),
                    dropout=float(lo.dropout))
    if ad.r < 1:
        raise RecipeError(f"pretrain.lora.r: must be >= 1, got {ad.r}")
    if not ad.targets:
        raise RecipeError("pretrain.lora.target_modules: empty; name the modules to adapt, e.g. "
                          f"{list(LO.LAYER_LINEARS)}")
    for key, names in (("target_modules", ad.targets), ("modules_to_save", ad.modules_to_save)):
        bad = LO.unknown(shape, names, saved=key == "modules_to_save")
        if bad:
            raise RecipeError(f"pretrain.lora.{key}: {bad} not a module of a Llama model; it has "
                              f"{', '.join(LO.modules(shape))}")
    return ad


def recipe_option(cfg: DictConfig) -> Optional[str]:
    """The OPTIONS label the recipe itself would run (pretrain.zero_stage over the deepspeed config's stage)."""
    zero = (cfg.deepspeed or {}).get("zero_optimization", {}) or {}
    stage = cfg.pretrain.zero_stage if cfg.pretrain.zero_stage is not None else zero.get("stage", 0)

    def offloaded(key: str) -> bool:
        return str((zero.get(key) or {}).get("device", "none")) not in ("none", "None")

    want = (int(stage), offloaded("offload_optimizer"), offloaded("offload_param"))
    return next((o.label for o in M.OPTIONS if (o.stage, o.offload_optimizer, o.offload_param) == want), None)


def make_plan(cfg: DictConfig, st: Settings | None = None) -> dict[str, Any]:
    st = st or Settings()
    check(cfg, st)
    shape = shape_of(cfg, st.vocab_size)
    c, p = cfg.cluster, cfg.pretrain
    gpus = cfg.nnodes * c.gpus_per_node
    s, b = p.seq_len, p.micro_batch_size
    score = cfg.model.attn_implementation not in NO_SCORE_ATTENTION
    out: dict[str, Any] = {
        "model": cfg.base.name if base_shape(cfg) is not None else cfg.model.name,
        "cluster": c.name, "nnodes": cfg.nnodes, "gpus_per_node": c.gpus_per_node,
        "gpus": gpus, "memory_gib_per_gpu": c.memory_gb_per_device, "params": shape.params,
        "embedding_params": shape.embedding_params, "largest_layer_params": shape.largest_layer_params,
        "vocab_size": shape.vocab, "seq_len": s, "micro_batch_size": b,
        "gradient_checkpointing": bool(p.gradient_checkpointing), "attn_implementation": cfg.model.attn_implementation,
        "attention_score_term": score, "overhead_gib": st.overhead_gb, "recipe_option": recipe_option(cfg),
        "method": "full", "trainable_params": shape.params, "options": [],
    }
    ad = adapter_of(cfg, shape)
    if ad is not None:
        part, whole = LO.frozen_bytes(shape, ad)
        out.update({"method": ad.method, "lora_r": ad.r, "lora_targets": list(ad.targets),
                    "modules_to_save": list(ad.modules_to_save), "trainable_params": LO.trainable_params(shape, ad),
                    "adapter_params": LO.adapter_params(shape, ad), "saved_params": LO.saved_params(shape, ad),
                    "quantised_params": LO.quantised_params(shape, ad), "frozen_base_gib": (part + whole) / M.GIB})
    if c.memory_gb_per_device > 0:
        mem = c.memory_gb_per_device * M.GIB
        per_seq = {ck: M.activation_bytes(shape, s, 1, ck, score)
                   + (LO.extra_activation_bytes(shape, ad, s, 1, ck) if ad else 0) for ck in (False, True)}
        for opt in M.OPTIONS:
            if ad is None:
                ms = M.model_states(shape.params, shape.largest_layer_params, max(gpus, 1), opt)
            else:
                ms = LO.model_states(shape, ad, max(gpus, 1), opt)
            row: dict[str, Any] = {"option": opt.label, "stage": opt.stage, "offload_optimizer": opt.offload_optimizer,
                                   "offload_param": opt.offload_param, "params_gib": ms.params / M.GIB,
                                   "grads_gib": ms.grads / M.GIB, "optim_gib": (ms.optim + ms.fp32_grads) / M.GIB,
                                   "model_states_gib": ms.peak / M.GIB,
                                   "host_gib_per_node": ms.host * c.gpus_per_node / M.GIB}
            for ck, tag in ((False, ""), (True, "_ckpt")):
                act = b * per_seq[ck]
                total = M.total_bytes(ms, act, st.overhead_gb)
                row.update({f"activations{tag}_gib": act / M.GIB, f"total{tag}_gib": total / M.GIB,
                            f"fits{tag}": total <= mem,
                            f"max_micro_batch{tag}": M.max_micro_batch(ms, per_seq[ck], mem, st.overhead_gb)})
            out["options"].append(row)
    out.update(compute(cfg, shape, st.mfu, gpus))
    return out


def compute(cfg: DictConfig, shape: Shape, mfu: float, gpus: int) -> dict[str, Any]:
    c, p = cfg.cluster, cfg.pretrain
    chinchilla = CHINCHILLA_TOKENS_PER_PARAM * shape.params
    flops = p.get("flops")
    # pretrain.flops: D = flops / (6 x non-embedding parameters), as the pretrain stage sets it (planner/budget.py)
    given = budget_tokens(p, shape.non_embedding_params)
    source = "pretrain.flops" if flops is not None else "pretrain.tokens"
    tokens = int(given) if given is not None else chinchilla
    fpt = shape.flops_per_token(p.seq_len)
    # As the pretrain stage's schedule (train/schedule.py) sets the batch: global_batch_tokens, else the product.
    if p.global_batch_tokens:
        batch, batch_source = int(p.global_batch_tokens), "pretrain.global_batch_tokens"
    else:
        batch = p.seq_len * p.micro_batch_size * p.gradient_accumulation_steps * max(gpus, 1)
        batch_source = "seq_len x micro batch x grad. accumulation x GPUs"
    out: dict[str, Any] = {"mfu": mfu, "peak_tflops_per_gpu": c.peak_tflops_per_device, "flops_per_token": fpt,
                           "chinchilla_tokens": chinchilla, "tokens": tokens,
                           "tokens_source": source if given is not None else "chinchilla",
                           "non_embedding_params": shape.non_embedding_params,
                           "flops_budget": float(flops) if flops is not None else None,
                           "global_batch_tokens": batch, "global_batch_source": batch_source, "runs": []}
    budgets = [(source, tokens)] if given is not None else []
    for name, n in budgets + [("chinchilla", chinchilla)]:
        run: dict[str, Any] = {"budget": name, "tokens": n, "flops": fpt * n,
                               "steps": math.ceil(n / batch)}
        if gpus > 0 and c.peak_tflops_per_device > 0:
            gpu_seconds = fpt * n / (c.peak_tflops_per_device * 1e12 * mfu)
            run.update({"gpu_hours": gpu_seconds / 3600, "days": gpu_seconds / gpus / 86400})
        out["runs"].append(run)
    return out


def _n(x: float) -> str:
    """1234567 -> 1.23M: token and parameter counts at a glance."""
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return str(int(x))


def render(plan: dict[str, Any]) -> str:
    pl = plan
    lines = [
        f"model {pl['model']}: {pl['params']:,} parameters ({_n(pl['params'])}; vocab {pl['vocab_size']:,}, "
        f"largest module {_n(pl['largest_layer_params'])})",
        f"cluster {pl['cluster']}: {pl['nnodes']} node(s) x {pl['gpus_per_node']} GPUs = {pl['gpus']} GPUs "
        "(data parallel)",
        f"pretrain: micro batch {pl['micro_batch_size']} x seq_len {pl['seq_len']}, attention "
        f"{pl['attn_implementation']} ({'with' if pl['attention_score_term'] else 'no'} s^2 score term), "
        f"recipe gradient_checkpointing={str(pl['gradient_checkpointing']).lower()}",
    ]
    if pl["method"] != "full":
        base = "NF4 + double quantisation (4.127 bits) for the decoder Linears, bf16 the rest" \
            if pl["method"] == "qlora" else "bf16"
        lines.append(f"{'QLoRA' if pl['method'] == 'qlora' else 'LoRA'} r={pl['lora_r']} on "
                     f"{','.join(pl['lora_targets'])}"
                     + (f" + full {','.join(pl['modules_to_save'])}" if pl["modules_to_save"] else "")
                     + f": {pl['trainable_params']:,} trainable ({pl['trainable_params'] / pl['params']:.2%}); "
                     f"frozen base {pl['frozen_base_gib']:.1f} GiB in {base}, whole on every GPU unless ZeRO-3")
    lines.append("")
    if not pl["options"]:
        lines += [f"cluster.memory_gb_per_device=0: profile '{pl['cluster']}' has no accelerator memory; "
                  "memory table skipped", ""]
    else:
        lines += [
            f"memory per GPU, GiB of {pl['memory_gib_per_gpu']:g} (total includes {pl['overhead_gib']:g} GiB overhead; "
            "mb = largest micro batch that fits)",
            f"{'':27}{'model states':^27} |{'no checkpointing':^24} |{'act. checkpointing':^24} | offload",
            f"{'option':<27}{'params':>7}{'grads':>7}{'optim':>7}{'peak':>6} |{'activ':>7}{'total':>7}{'fits':>5}"
            f"{'mb':>5} |{'activ':>7}{'total':>7}{'fits':>5}{'mb':>5} | host/node",
        ]
        for r in pl["options"]:
            label = r["option"] + (" *" if r["option"] == pl["recipe_option"] else "")
            cells = (f"{label:<27}{r['params_gib']:7.2f}{r['grads_gib']:7.2f}{r['optim_gib']:7.2f}"
                     f"{r['model_states_gib']:6.1f} |")
            for tag in ("", "_ckpt"):
                cells += (f"{r[f'activations{tag}_gib']:7.1f}{r[f'total{tag}_gib']:7.1f}"
                          f"{'yes' if r[f'fits{tag}'] else 'NO':>5}{r[f'max_micro_batch{tag}']:>5} |")
            host = f"{r['host_gib_per_node']:8.0f}" if r["host_gib_per_node"] else f"{'-':>8}"
            lines.append(cells + host)
        lines += ["optim = fp32 master + Adam m, v (12 B/param) + the step's fp32 gradients (4 B/param); peak = "
                  "max(forward/backward with ZeRO-3's gathered module, optimizer step)"]
        if pl["method"] != "full":
            lines.append("params = frozen base + trainable bf16; grads and optim of the trainable parameters only"
                         + ("; forward/backward adds the bf16 dequantised weight" if pl["method"] == "qlora" else ""))
        if pl["recipe_option"]:
            lines.append("* the recipe's own choice (pretrain.zero_stage, else deepspeed.zero_optimization)")
        lines.append("")
    lines.append(f"Chinchilla budget: {_n(pl['chinchilla_tokens'])} tokens (20 x {_n(pl['params'])} parameters)")
    if pl.get("flops_budget") is not None:
        lines.append(f"pretrain.flops {pl['flops_budget']:.3e} = 6 x {_n(pl['non_embedding_params'])} non-embedding "
                     f"parameters x {_n(pl['tokens'])} tokens (the FLOPs column below counts 6 x all parameters "
                     "+ attention)")
    lines.append(f"compute: {pl['flops_per_token'] / 1e9:.1f} GFLOPs/token (6 x params + 6 x layers x seq_len x "
                 "hidden), "
                 f"global batch {_n(pl['global_batch_tokens'])} tokens ({pl['global_batch_source']})")
    if pl["method"] != "full":
        lines.append("LoRA: the backward pass skips the frozen weights' gradients (~4 x params + 6 x trainable FLOPs "
                     "per token of real work); the time counts 6 x params, as the logged mfu does")
    timed = all("gpu_hours" in r for r in pl["runs"])
    if timed:
        lines.append(f"time at MFU {pl['mfu']:.2f} of {pl['peak_tflops_per_gpu']:g} TFLOPS/GPU on {pl['gpus']} GPUs:")
    else:
        lines.append("time: the cluster profile has no GPUs or no cluster.peak_tflops_per_device; FLOPs only:")
    timing = f"{'GPU-hours':>12}{'days':>9}" if timed else ""
    lines.append(f"  {'budget':<16}{'tokens':>10}{'FLOPs':>11}{'steps':>13}{timing}")
    for r in pl["runs"]:
        row = f"  {r['budget']:<16}{_n(r['tokens']):>10}{r['flops']:>11.2e}{r['steps']:>13,}"
        if timed:
            row += f"{r['gpu_hours']:>12,.0f}{r['days']:>9.1f}"
        lines.append(row)
    return "\n".join(lines)
