"""eval stage: the trained models measured, on CPU in this process (not under torchrun).

For eval.model_stage (default dpo, must be complete) and every other stage of eval.stages whose final/ is complete:
  - perplexity on the shards' validation split, overall and per data source (index.json "sources", .docs.npy);
  - greedy generations for a fixed prompt set (eval.prompts), side by side in generations.jsonl;
  - lm-evaluation-harness benchmarks (hf backend) on LOCAL task files: examples/eval/tasks plus eval.task_dirs,
    eval.tasks by name, eval.limit items per task (kgov_train.evaluation.harness);
then report.md / report.json with tables and PNG plots of the whole run (training loss curves, the data funnel,
tokenizer figures). Nothing is downloaded: the CLI runs it with kgov_train.offline.OFFLINE_ENV (HF_*_OFFLINE).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from kgov_train import assets
from kgov_train.errors import ManifestError
from kgov_train.evaluation import generate, harness, perplexity, report
from kgov_train.manifest import Manifest
from kgov_train.run_folder import FINAL, StageContext, StageResult
from kgov_train.stages import chain, selected

log = logging.getLogger("kgov_train")

TASKS_DIR = assets.EXAMPLES / "eval" / "tasks"
OUTPUTS = ("report.md", "report.json", "generations.jsonl", "lm_eval_results.json")


def task_folders(cfg: DictConfig) -> list[Path]:
    return [TASKS_DIR] + [Path(str(p)) for p in cfg.eval.task_dirs]


def check(cfg: DictConfig, name: str = "eval") -> list[str]:
    names = [s.name for s in chain(cfg) if s.distributed]
    errors = []
    if str(cfg.eval.model_stage) not in names:
        errors.append(f"eval.model_stage: one of the run's training stages {names}, got '{cfg.eval.model_stage}'")
    unknown = [s for s in cfg.eval.stages if s not in names and s != "sft"]
    if unknown:
        errors.append(f"eval.stages: {unknown} are not training stages of the run ({names})")
    return errors


def models(cfg: DictConfig) -> dict[str, Path]:
    """{stage: its final/ folder}: eval.model_stage (must be complete), then the complete ones of eval.stages."""
    run_dir = Path(cfg.run_dir)
    main = str(cfg.eval.model_stage)
    m = Manifest.load(run_dir / main)
    if m is None or m.status != "complete":
        state = "has no manifest" if m is None else f"is {m.status}"
        raise ManifestError(f"stage 'eval' needs stage '{main}' (eval.model_stage): {run_dir / main} {state}; "
                            "run it first")
    if not (run_dir / main / FINAL / "config.json").is_file():
        raise ManifestError(f"stage 'eval': {run_dir / main / FINAL} holds no model (eval.model_stage={main})")
    # in chain order; "sft" names every SFT stage (sft_general, sft_domain, ...)
    names = [s.name for s in selected(cfg, [*[str(s) for s in cfg.eval.stages], main])]
    found = {name: run_dir / name / FINAL for name in names
             if (other := Manifest.load(run_dir / name)) is not None and other.status == "complete"
             and (run_dir / name / FINAL / "config.json").is_file()}
    return found if main in found else {**found, main: run_dir / main / FINAL}  # checked above


def external_inputs(cfg: DictConfig, name: str = "eval") -> list[Path]:
    """The evaluated models, the prompts and the task folders: a change to any reruns the stage."""
    return [*models(cfg).values(), Path(str(cfg.eval.prompts)), *harness.task_data_files(task_folders(cfg))]


def run(ctx: StageContext) -> StageResult:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg, e = ctx.cfg, ctx.cfg.eval
    out = ctx.stage_dir
    out.mkdir(parents=True, exist_ok=True)
    finals = models(cfg)
    seq_len = int(e.seq_len or cfg.pretrain.seq_len)
    prompts = generate.read_prompts(Path(str(e.prompts)))
    device = "cuda" if cfg.cluster.device == "cuda" and torch.cuda.is_available() else "cpu"
    torch.manual_seed(int(cfg.seed))

    shards = ctx.upstream["shards"]
    windows = perplexity.validation_windows(shards, seq_len, int(e.max_tokens_per_source))
    if not windows:
        log.warning("eval: the validation split of %s is empty; no perplexity", shards)
    tasks = [str(t) for t in e.tasks]
    manager = harness.task_manager(harness.resolve_task_dirs(task_folders(cfg), out / "lm_eval_tasks")) if tasks \
        else None
    limit = int(e.limit) if e.limit is not None else None

    ppl: dict[str, Any] = {}
    bench: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    gens: dict[str, list[dict[str, Any]]] = {}
    for stage, final in finals.items():
        log.info("eval: %s (%s)", stage, final)
        tokenizer = AutoTokenizer.from_pretrained(final)
        model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).to(device).eval()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if windows:
            ppl[stage] = perplexity.perplexity(model, windows, int(e.batch_size), pad)
            log.info("eval: %s validation perplexity %s over %d tokens", stage, ppl[stage]["all"]["perplexity"],
                     ppl[stage]["all"]["tokens"])
        chat = stage != "pretrain" and bool(getattr(tokenizer, "chat_template", None))
        gens[stage] = generate.generate(model, tokenizer, prompts, int(e.max_new_tokens), chat)
        del model
        if manager is not None:
            res = harness.evaluate(final, tasks, manager, limit, int(e.batch_size),
                                   int(e.num_fewshot) if e.num_fewshot is not None else None, device)
            bench[stage], raw[stage] = res["tasks"], res["raw"]
            log.info("eval: %s lm-eval %s", stage, {t: r["acc"] for t, r in bench[stage].items()})

    side_by_side = [{"id": p["id"], "prompt": p["prompt"],
                     "outputs": {s: g[i]["output"] for s, g in gens.items()},
                     "modes": {s: g[i]["mode"] for s, g in gens.items()}} for i, p in enumerate(prompts)]
    with open(out / "generations.jsonl", "w", encoding="utf-8") as f:
        for row in side_by_side:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "lm_eval_results.json").write_text(json.dumps(raw, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    run = report.gather_run(ctx.run_dir, [s.name for s in chain(cfg) if s.distributed])
    for old in out.glob("*.png"):
        old.unlink()
    images = report.plots(out, run, ppl, bench)
    full = {"model_stage": str(e.model_stage), "stages": list(finals), "models": {s: str(p) for s, p in finals.items()},
            "seq_len": seq_len, "max_tokens_per_source": int(e.max_tokens_per_source), "tasks": tasks, "limit": limit,
            "perplexity": ppl, "lm_eval": bench, "generations": side_by_side, "run": run, "plots": images}
    (out / "report.json").write_text(json.dumps(full, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report.markdown(full, images), encoding="utf-8")

    main = str(e.model_stage)
    metrics: dict[str, Any] = {
        "model_stage": main,
        "stages": list(finals),
        "perplexity": ppl.get(main, {}).get("all", {}).get("perplexity"),
        **{f"acc_{t}": r["acc"] for t, r in bench.get(main, {}).items()},
        "perplexity_by_stage": {s: {"all": p["all"]["perplexity"], **{k: v["perplexity"] for k, v in p["sources"].items()}}
                                for s, p in ppl.items()},
        "accuracy_by_stage": {s: {t: r["acc"] for t, r in b.items()} for s, b in bench.items()},
        "items_by_task": {t: r["n"] for t, r in bench.get(main, {}).items()},
    }
    return StageResult(outputs=[*OUTPUTS, *images, "lm_eval_tasks"], metrics=metrics)
