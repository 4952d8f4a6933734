"""The CycloneDX 1.6 parts cyclonedx-python-lib 11.12 cannot express, as plain JSON: a component's `modelCard`
(components of type machine-learning-model) and `data` (components of type data).

The library's Component has neither (component.py keeps them as "TODO since CDX1.5" comments), so
kgov_train.papers.cyclonedx adds these objects to the library's JSON output by bom-ref, and the whole document is then
checked against the CycloneDX 1.6 JSON schema (JsonStrictValidator). Everything here is read from the facts of
kgov_train.papers.facts.gather(); nothing is typed by hand but the enum choices explained below.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from kgov_train.papers.card import USABLE_MIN_PARAMETERS

# modelCard.modelParameters.approach.type is an enum: supervised | unsupervised | reinforcement-learning |
# semi-supervised | self-supervised.
#   pretrain (and continued pretraining): next-token prediction on raw text, the labels are the text itself
#                                          -> self-supervised.
#   sft / sft_<name>: next-token loss on the assistant turns of labelled prompt/answer pairs -> supervised.
#   dpo: an offline classification-style loss on human-labelled (chosen, rejected) pairs; no agent, environment,
#        reward rollouts or trial and error as CycloneDX's "reinforcement-learning" describes, so -> supervised
#        (the property kgov:approach says "direct-preference-optimization").
APPROACH = {"pretrain": ("self-supervised", "causal-language-modelling"),
            "sft": ("supervised", "supervised-fine-tuning"),
            "dpo": ("supervised", "direct-preference-optimization")}


def stage_kind(stage: str) -> str:
    return "sft" if stage.startswith("sft") else stage


def architecture(f: dict[str, Any]) -> tuple[str | None, str | None]:
    """(architecture class, model_type) of the model in final/: its config.json, else what the base facts and the
    recorded config say."""
    try:
        cfg = json.loads((Path(f["final_dir"]) / "config.json").read_text(encoding="utf-8"))
        archs = cfg.get("architectures") or [None]
        if archs[0] or cfg.get("model_type"):
            return archs[0], cfg.get("model_type")
    except (OSError, ValueError, AttributeError):
        pass
    b = f.get("base") or {}
    model = b.get("model") or (f.get("config") or {}).get("model") or {}
    return b.get("architecture") or model.get("architecture"), b.get("model_type") or model.get("model_type")


def _num(v: Any) -> str:
    return format(v, ".6g") if isinstance(v, float) else str(v)


def performance_metrics(f: dict[str, Any]) -> list[dict[str, str]]:
    """This model's measured figures: the eval stage's lm-eval accuracies, perplexities and bits per byte (only those
    it attributes to this stage) and the training stage's own held-out figures."""
    stage, ev = f["stage"], f.get("evaluation") or {}
    out: list[dict[str, str]] = []
    s = re.escape(stage)
    patterns = ((re.compile(rf"^accuracy_by_stage\.{s}\.(.+)$"), "accuracy"),  # a sealed eval manifest
                (re.compile(rf"^lm_eval\.{s}\.(.+)\.acc$"), "accuracy"),  # eval/report.json
                (re.compile(rf"^perplexity_by_stage\.{s}\.(.+)$"), "perplexity"),
                (re.compile(rf"^perplexity\.{s}\.(.+)\.perplexity$"), "perplexity"))
    for key, value in (ev.get("eval_stage") or {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        for pat, kind in patterns:
            m = pat.match(key)
            if m:
                out.append({"type": kind, "value": _num(value), "slice": f"eval: {m.group(1)}"})
                break
    for text_set, v in (ev.get("bits_per_byte") or {}).items():
        if v.get("bits_per_byte") is not None:
            out.append({"type": "bits-per-byte", "value": _num(v["bits_per_byte"]), "slice": f"eval: {text_set}"})
        if v.get("vs_base") is not None:
            out.append({"type": "bits-per-byte change vs imported base (below 0 = better)",
                        "value": _num(v["vs_base"]), "slice": f"eval: {text_set}"})
    for key, value in ((ev.get("training") or {}).get(stage) or {}).items():
        out.append({"type": key, "value": _num(value), "slice": f"training stage {stage} (own held-out split)"})
    return out


def considerations(f: dict[str, Any]) -> dict[str, Any]:
    """What the facts say a user must weigh: the data licences, personal data found, the base's licence, a
    smoke-test size, the data cut-off, a missing evaluation, and the compute spent."""
    limits: list[str] = []
    params = (f.get("compute") or {}).get("parameters")
    if params is not None and params < USABLE_MIN_PARAMETERS:
        limits.append(f"A {params:,}-parameter smoke-test model: its outputs are not usable for any purpose.")
    if f.get("data_cutoff"):
        limits.append(f"Knows only its training data, frozen when the data stage ended ({f['data_cutoff']}).")
    if stage_kind(f["stage"]) == "pretrain":
        limits.append("A pretrained model, not instruction-tuned: it does not follow chat instructions reliably.")
    if (f.get("evaluation") or {}).get("eval_stage") is None:
        limits.append("Not benchmarked by the eval stage when this BOM was written.")
    risks = []
    for lic, v in sorted((f.get("licenses") or {}).items()):
        risks.append({"name": f"Training data under licence {lic} (sources {', '.join(v.get('sources') or [])}: "
                              f"{v.get('docs_kept')} documents, {v.get('chars_kept')} characters kept)",
                      "mitigationStrategy": "The licence is recorded on each data component; honour its terms "
                                            "(attribution, redistribution) when publishing the model or its outputs."})
    for name, s in sorted((f.get("sources") or {}).items()):
        if s.get("pii"):
            found = ", ".join(f"{k} {n}" for k, n in sorted(s["pii"].items()))
            risks.append({"name": f"Personal data found in source {name}: {found}",
                          "mitigationStrategy": "Pseudonymised by the data stage's pattern matching; that is no "
                                                "guarantee none remains in the training data or in outputs."})
    b = f.get("base") or {}
    lic = b.get("license") or (b.get("bundle") or {}).get("license")
    if b.get("kind") == "imported":
        risks.append({"name": f"Built on the foundation model {b.get('name')} under licence {lic}",
                      "mitigationStrategy": "The base model component carries its licence; its terms apply to "
                                            "this derived model."})
    out: dict[str, Any] = {}
    if limits:
        out["technicalLimitations"] = limits
    if risks:
        out["ethicalConsiderations"] = risks
    c = f.get("compute") or {}
    env = [("kgov:device_hours", c.get("device_hours"), c.get("device_hours_unit")),
           ("kgov:chain_device_hours", c.get("chain_device_hours"), c.get("device_hours_unit")),
           ("kgov:training_flops", c.get("training_flops"), c.get("training_flops_method")),
           ("kgov:chain_training_flops", c.get("chain_training_flops"), None)]
    props = [{"name": k, "value": _num(v) + (f" ({unit})" if unit else "")} for k, v, unit in env if v]
    if props:  # no energy was measured: environmentalConsiderations.energyConsumptions stays out
        out["environmentalConsiderations"] = {"properties": props}
    return out


def model_card(f: dict[str, Any], dataset_refs: list[str]) -> dict[str, Any]:
    arch, model_type = architecture(f)
    approach, _ = APPROACH[stage_kind(f["stage"])]
    chat = stage_kind(f["stage"]) != "pretrain"
    params: dict[str, Any] = {
        "approach": {"type": approach},
        "task": "text-generation",
        "architectureFamily": "transformer (decoder-only causal language model)",
        "datasets": [{"ref": r} for r in dataset_refs],
        "inputs": [{"format": "text: UTF-8 string" + (", chat messages through the tokenizer's chat template"
                                                     if chat else "")}],
        "outputs": [{"format": "text: UTF-8 string (generated tokens)"}]}
    if arch or model_type:
        params["modelArchitecture"] = " / ".join(str(x) for x in (arch, model_type) if x)
    card: dict[str, Any] = {"modelParameters": params}
    metrics = performance_metrics(f)
    if metrics:
        card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    cons = considerations(f)
    if cons:
        card["considerations"] = cons
    return card


def base_model_card(b: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"task": "text-generation", "architectureFamily": "transformer"}
    arch = " / ".join(str(x) for x in (b.get("architecture"), b.get("model_type")) if x)
    if arch:
        params["modelArchitecture"] = arch
    return {"modelParameters": params}


def source_data(name: str, s: dict[str, Any]) -> dict[str, Any]:
    """componentData of one source of the data stage."""
    t = s.get("tokens") or {}
    parts = [f"{k} {s[k]}" for k in ("files", "docs_in", "docs_kept", "docs_rejected", "chars_kept")
             if s.get(k) is not None]
    parts += [f"{k} tokens {t[k]}" for k in ("train", "validation", "mixture") if t.get(k) is not None]
    d: dict[str, Any] = {"type": "dataset", "name": name,
                         "description": "Pretraining corpus source (data stage): " + (", ".join(parts) or "no counts")}
    if s.get("pii"):
        d["sensitiveData"] = [f"{k}: {n} found and pseudonymised" for k, n in sorted(s["pii"].items())]
    return d


def finetune_data(d: dict[str, Any]) -> dict[str, Any]:
    return {"type": "dataset", "name": Path(d["path"]).name,
            "description": f"Fine-tuning data of stage {d['stage']}: {d['path']} ({d.get('bytes')} bytes)"}
