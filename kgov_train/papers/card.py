"""MODEL_CARD.md: the human-readable card of one trained model, rendered from the gathered facts only."""

from __future__ import annotations

from typing import Any

# Below this many parameters a model is a pipeline smoke test, not an assistant.
USABLE_MIN_PARAMETERS = 100_000_000
_HPARAMS = ("learning_rate", "lr_scheduler_type", "warmup_steps", "max_steps", "micro_batch_size",
            "gradient_accumulation_steps", "seq_len", "max_length", "tokens", "global_batch_tokens",
            "max_grad_norm", "zero_stage", "gradient_checkpointing", "beta", "loss_type", "precompute_ref_log_probs",
            "assistant_only_loss", "packing", "overlong", "system_prompt")


def _section(cfg: dict[str, Any], stage: str) -> dict[str, Any]:
    """The stage's own section of its recorded config: `pretrain`, `dpo`, ...; a named SFT stage records `sft` and
    `sft_stages.<name>`, whose keys win (kgov_train.config.sections)."""
    own = cfg.get(stage)
    if isinstance(own, dict):
        return own
    named = cfg.get(f"sft_stages.{stage}")
    if not isinstance(named, dict):
        return {}
    merged = dict(cfg.get("sft") or {})
    for k, v in named.items():
        merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def _lora_row(section: dict[str, Any]) -> str | None:
    lo = section.get("lora") or {}
    if not lo.get("enabled"):
        return None
    text = (f"r={lo.get('r')}, alpha={lo.get('alpha')}, dropout={lo.get('dropout')}, "
            f"target_modules={lo.get('target_modules')}")
    if lo.get("modules_to_save"):
        text += f", modules_to_save={lo['modules_to_save']}"
    return text + (", QLoRA (4-bit NF4 base)" if lo.get("qlora") else "") + "; final/ is the merged model"


def _n(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3e}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_n(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out + [""]


def _bundle_line(c: dict[str, Any] | None) -> str:
    """How the base crossed the air gap: the bundle, its hash (sha256 of assets.json) and the source it names."""
    if not c:
        return ""
    return (f" It was carried into the closed network as entry `{c.get('entry')}` of the bundle `{c.get('bundle')}`, "
            f"bundle hash (sha256 of assets.json) `{c.get('assets_sha256')}`, every file verified against it; "
            f"source `{c.get('source_id') or 'unknown'}` at revision `{c.get('revision') or 'unknown'}`, licence "
            f"per its card `{c.get('license')}`.")


def _base_line(f: dict[str, Any]) -> str:
    b = f["base"]
    if b["kind"] == "scratch":
        m = b.get("model", {})
        return (f"Trained from scratch (random initialisation) with the model recipe `{m.get('name')}`: "
                f"{m.get('architecture')}, hidden size {m.get('hidden_size')}, {m.get('num_hidden_layers')} layers, "
                f"{m.get('num_attention_heads')} attention heads ({m.get('num_key_value_heads')} key/value heads).")
    if b["kind"] == "imported":
        weights = [e for e in b.get("files") or [] if e["path"].endswith((".safetensors", ".bin", ".pt", ".pth"))]
        shas = ", ".join(f"`{e['path']}` sha256 `{e['sha256']}`" for e in weights) or "no weight files recorded"
        flags = [k for k in ("allow_pickle", "trust_remote_code", "allow_unknown_license") if b.get(k)]
        return (f"Built on the foundation model `{b.get('name')}` ({b.get('architecture')}, {b.get('parameters')} "
                f"parameters, licence `{b.get('license')}`), imported from the local folder `{b.get('path')}` and "
                f"verified by the base stage ({shas})" + (f"; accepted with {', '.join(flags)}" if flags else "") + "."
                + _bundle_line(b.get("bundle")))
    if b["kind"] == "init_from":
        weights = [e for e in b.get("files", []) if e["path"].endswith(".safetensors")]
        shas = ", ".join(f"`{e['path']}` sha256 `{e['sha256']}`" for e in weights) or "no safetensors found"
        return f"Continued pretraining from the local checkpoint `{b['path']}` (model.init_from; {shas})."
    shas = ", ".join(f"`{p}` sha256 `{s}`" for p, s in b.get("weights_sha256", {}).items()) or "weights not sealed"
    return (f"Fine-tuned from the `{b['stage']}` stage of this run: `{b['path']}` (stage fingerprint "
            f"`{b.get('fingerprint')}`; {shas}).")


def _bits_per_byte(ev: dict[str, Any], stage: str) -> list[str]:
    """This model's bits per byte per text set, as the eval stage measured it, and the change from the base."""
    bpb = ev.get("bits_per_byte")
    if not bpb:
        return [f"The eval stage did not score `{stage}` in bits per byte (eval.stages / eval.model_stage).", ""]
    base = any(v.get("base") is not None for v in bpb.values())
    L = ["Bits per byte (the eval stage): negative log-likelihood in bits per UTF-8 byte of raw text, through the "
         "model's own tokenizer, so comparable across tokenizers; lower is better."
         + (" Change: this model minus the imported foundation model (`base`); below 0 = better." if base else ""),
         ""]
    header = ["text set", "bits per byte"] + (["base", "change"] if base else [])
    L += _table(header, [[k, v["bits_per_byte"]] + ([v["base"], v["vs_base"]] if base else [])
                         for k, v in bpb.items()])
    if ev.get("bits_per_byte_plot"):
        L += [f"Plot of every evaluated model: `{ev['bits_per_byte_plot']}`.", ""]
    return L


def _benchmark_datasets(datasets: dict[str, Any]) -> list[str]:
    """The local benchmark copies eval read, and the bundle each was carried in with its hash."""
    if not datasets:
        return []
    rows = [[hub, d.get("folder"), (d.get("bundle") or {}).get("bundle", "not from a bundle"),
             (d.get("bundle") or {}).get("assets_sha256"), (d.get("bundle") or {}).get("revision")]
            for hub, d in datasets.items()]
    return ["Benchmark datasets (local copies; bundle hash = sha256 of its assets.json):", "",
            *_table(["dataset", "folder", "bundle", "bundle sha256", "revision"], rows)]


def render_card(f: dict[str, Any]) -> str:
    stage, c, cfg = f["stage"], f["compute"], f["config"]
    section = _section(cfg, stage)
    L: list[str] = []
    title = f"{f['recipe_name']}-{stage}" if f.get("recipe_name") else f"{stage} model"
    L += [f"# Model card: {title}", "",
          "_Generated by kgov_train.papers from the run's manifests; every number below is read from the run "
          "folder, none is written by hand. Machine-readable counterparts: `bom.json` (format kgov-bom/1) and "
          "`bom.cdx.json` (CycloneDX 1.6 ML-BOM)._", "",
          f"- Stage: `{stage}` (status when written: {f['status']})",
          f"- Run folder: `{f['run_dir']}`",
          f"- Git commit: `{f['git_commit']}`",
          f"- Written: {f['generated_at']}", ""]

    L += ["## 기반 모델 (Base model)", "", _base_line(f), ""]

    L += ["## 학습 단계 (Stages of the chain)", ""]
    L += _table(["stage", "status", "config sha256", "fingerprint", "wall s", "ended"],
                [[s["stage"], s["status"], (s["config_sha256"] or "")[:16], (s["fingerprint"] or "")[:16],
                  s["wall_seconds"], s["ended_at"]] for s in f["chain"]])

    L += ["## 학습 데이터 (Training data)", ""]
    rows = []
    for name, s in sorted(f["sources"].items()):
        t = s.get("tokens") or {}
        rows.append([name, s.get("license"), s.get("files"), s.get("docs_kept"), s.get("chars_kept"),
                     t.get("train"), t.get("validation"), t.get("mixture")])
    L += _table(["source", "licence", "files", "documents kept", "characters kept", "train tokens",
                 "validation tokens", "mixture tokens"], rows)
    if f["licenses"]:
        L += _table(["licence", "sources", "documents kept", "characters kept"],
                    [[lic, ", ".join(v.get("sources", [])), v.get("docs_kept"), v.get("chars_kept")]
                     for lic, v in sorted(f["licenses"].items())])
    pii = {n: s.get("pii") for n, s in f["sources"].items() if s.get("pii")}
    if pii:
        L += ["Personal data found and pseudonymised by the data stage, per source: "
              + "; ".join(f"{n}: " + ", ".join(f"{k} {v}" for k, v in sorted(p.items())) for n, p in sorted(pii.items()))
              + ".", ""]
    L += [f"{len(f['data_files'])} corpus input files, each listed with its sha256 in `bom.json` (data.files).", ""]
    if f["finetune_files"]:
        L += ["Fine-tuning data:", ""]
        L += _table(["stage", "file", "sha256"], [[d["stage"], d["path"], d["sha256"]] for d in f["finetune_files"]])
    tok = f.get("tokenizer")
    if tok:
        L += [f"Tokenizer: {tok.get('model_type')} vocabulary of {_n(tok.get('vocab_size'))} pieces, "
              f"tokenizer.json sha256 `{tok.get('sha256')}`.", ""]
    if f["data_cutoff"]:
        L += [f"Data cut-off: the corpus was frozen when the data stage ended ({f['data_cutoff']}); the model knows "
              "nothing later, and nothing the corpus files did not contain.", ""]

    L += ["## 하이퍼파라미터 (Hyperparameters)", ""]
    hp = {k: section[k] for k in _HPARAMS if section.get(k) is not None}
    opt = section.get("optimizer") or {}
    if opt:
        hp["optimizer"] = (f"{opt.get('name')}, betas ({opt.get('beta1')}, {opt.get('beta2')}), eps {opt.get('eps')}, "
                           f"weight decay {opt.get('weight_decay')}")
    if section.get("trainer_args"):
        hp["trainer_args"] = section["trainer_args"]
    if _lora_row(section):
        hp["lora"] = _lora_row(section)
    for k in ("zero_stage", "seq_len"):
        if f["metrics"].get(k) is not None:
            hp[k] = f["metrics"][k]
    hp["precision"] = cfg.get("cluster.precision")
    hp["seed"] = cfg.get("seed")
    L += _table(["setting", "value"], [[k, v] for k, v in hp.items()])
    L += [f"The full resolved configuration of this stage is in `bom.json` (stages[-1].config, sha256 "
          f"`{f['chain'][-1]['config_sha256']}`).", ""]

    L += ["## 연산량 (Compute)", ""]
    L += _table(["stage", "world size", "device", "parameters", "tokens seen", "steps", "wall s", "device-hours",
                 "training FLOPs", "FLOPs method"],
                [[x["stage"], x["world_size"], x["device"], x["parameters"], x["tokens_seen"], x["steps"],
                  x["wall_seconds"], f"{_n(x['device_hours'])} {x['device_hours_unit']}", x["training_flops"],
                  x["training_flops_method"]] for x in c["chain"]])
    L += [f"Whole chain so far: {_n(c['chain_device_hours'])} device-hours, {_n(c['chain_training_flops'])} "
          "training FLOPs (data, tokenizer and shards stages not counted). Device-hours = world size x wall hours.",
          ""]

    L += ["## 평가 (Evaluation)", ""]
    ev = f["evaluation"]
    if ev["training"]:
        L += _table(["stage", "metric", "value"],
                    [[s, k, v] for s, vals in ev["training"].items() for k, v in vals.items()])
    if ev["eval_stage"] is not None:
        shown = list(ev["eval_stage"].items())[:60]
        L += [f"Evaluation stage results (`{ev['eval_path']}`"
              + (f", report.json sha256 `{ev['eval_report_sha256']}`" if ev.get("eval_report_sha256") else "")
              + (f"; first {len(shown)} of {len(ev['eval_stage'])} values, all in bom.json" if
                 len(shown) < len(ev["eval_stage"]) else "") + "):", ""]
        L += _table(["metric", "value"], [[k, v] for k, v in shown])
        L += _bits_per_byte(ev, stage)
        L += _benchmark_datasets(ev.get("benchmark_datasets") or {})
    else:
        L += ["No evaluation stage results were found in the run folder when this card was written: the model "
              "has not been benchmarked here. Run the eval stage, then `python -m kgov_train.papers <run_dir>` "
              "to add its results; do not deploy the model before.", ""]

    L += ["## 사용 목적 (Intended use)", "",
          "Drafting assistance for Korean public-sector work (documents, replies, summaries) by staff who review, "
          "correct and take responsibility for every output. Not for decisions about individuals, legal or "
          "administrative determinations, or unsupervised answers to citizens.", ""]

    L += ["## 한계 (Limitations)", ""]
    params = c.get("parameters")
    if params is not None and params < USABLE_MIN_PARAMETERS:
        L += [f"- **This is a {params:,}-parameter smoke-test model: its outputs are not usable for any purpose.** "
              "It exists to check the pipeline."]
    L += ["- It can state false things fluently (hallucination), including invented laws, article numbers, dates and "
          "figures; check every fact against the source.",
          "- It knows only its training data" + (f", frozen at {f['data_cutoff']}" if f["data_cutoff"] else "")
          + "; later laws and amendments are unknown to it.",
          "- Personal data (resident registration numbers, phone numbers, e-mail addresses, ...) was pseudonymised "
          "by pattern matching; that is not a guarantee that none remains in the training data or in outputs.",
          "- Biases of the sources (mostly official and legislative text) carry over to its style and content.",
          f"- Stage `{stage}` is one step of the chain" + (
              "; a pretrained model is not instruction-tuned and does not follow chat instructions reliably."
              if stage == "pretrain" else "; safety and preference tuning is limited to the data listed above."), ""]
    return "\n".join(L)
