"""eval stage: the trained models measured, on CPU in this process (not under torchrun).

For eval.model_stage (default dpo, must be complete), every other stage of eval.stages whose final/ is complete and,
on the routes that import a foundation model (cpt, finetune), that model itself, named `base`
(run_folder.model_folder(<run_dir>/base)), first:
  - bits per byte (kgov_train.evaluation.bits_per_byte), each model with its own tokenizer on the same raw text: the
    held-out corpus documents per source (routes with shards; kgov_train.evaluation.texts), the chat stages'
    validation records (routes without shards), and each file of eval.text_files; the held-out documents are read
    from <run_dir>/data/clean, which the shards were cut from (data is not one of eval's upstream stages: their
    count per source is checked against shards/index.json instead);
  - perplexity on the shards' validation split, overall and per data source (index.json "sources", .docs.npy), on
    the routes with shards and only for models whose tokenizer holds the shards' vocabulary (not the base model of a
    cpt run with an extended tokenizer: token ids would mean other pieces);
  - greedy generations for a fixed prompt set (eval.prompts), side by side in generations.jsonl;
  - lm-evaluation-harness benchmarks (hf backend) on LOCAL task files: examples/eval/tasks plus eval.task_dirs,
    eval.tasks by name, eval.limit items per task (kgov_train.evaluation.harness);
  - lm-eval's own Korean benchmarks, eval.benchmarks (KoBEST, KMMLU, HAE-RAE, CLIcK, ...), on the local copies of
    their datasets in eval.datasets_dir (kgov_train.evaluation.benchmarks), scored per task, per category and as
    each benchmark aggregates;
then report.md / report.json with tables and PNG plots of the whole run (training loss curves, the data funnel,
tokenizer figures), and the evaluated training stages' model cards again, with their bits per byte, in
papers/<stage>/ (kgov_train.papers.write_evaluated; their own final/ stay sealed). Nothing is downloaded: the
CLI runs it with kgov_train.offline.OFFLINE_ENV (HF_*_OFFLINE).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from kgov_train import assets
from kgov_train.chat import input_files, load_chat_data
from kgov_train.config.sections import chat_kind, key_of, section
from kgov_train.errors import ManifestError
from kgov_train.evaluation import benchmarks, bits_per_byte, generate, harness, perplexity, report, texts
from kgov_train.manifest import Manifest
from kgov_train.papers import write_evaluated
from kgov_train.run_folder import FINAL, TRAINING, StageContext, StageResult, model_folder
from kgov_train.stages import by_name, chain, selected

log = logging.getLogger("kgov_train")

TASKS_DIR = assets.EXAMPLES / "eval" / "tasks"
OUTPUTS = ("report.md", "report.json", "generations.jsonl", "lm_eval_results.json", "benchmark_results.json",
           "papers")
BASE = "base"


def task_folders(cfg: DictConfig) -> list[Path]:
    return [TASKS_DIR] + [Path(str(p)) for p in cfg.eval.task_dirs]


def check(cfg: DictConfig, name: str = "eval") -> list[str]:
    names = [s.name for s in chain(cfg) if s.distributed]
    errors = []
    if str(cfg.eval.model_stage) not in names:
        errors.append(f"eval.model_stage: one of the run's training stages {names}, got '{cfg.eval.model_stage}'")
    # the default [pretrain, sft, dpo] serves every route: a training stage the route does not run is left out
    unknown = [s for s in cfg.eval.stages if s not in names and s not in TRAINING
               and not (s == BASE and has_stage(cfg, BASE))]
    if unknown:
        errors.append(f"eval.stages: {unknown} are not training stages of the run ({names})")
    if cfg.eval.benchmarks:
        try:
            benchmarks.resolve([str(b) for b in cfg.eval.benchmarks], cfg.eval.datasets_dir)
        except benchmarks.BenchmarkError as e:
            errors.append(str(e))
    if int(cfg.eval.max_bytes_per_set) < 1:
        errors.append(f"eval.max_bytes_per_set: must be >= 1, got {cfg.eval.max_bytes_per_set}")
    return errors + texts.text_file_problems([str(f) for f in cfg.eval.text_files])


def benchmark_plan(cfg: DictConfig, out_dir: Path) -> benchmarks.Plan:
    """eval.benchmarks resolved against eval.datasets_dir, their lm-eval task folders copied into out_dir; raises
    BenchmarkError naming the key, the benchmark and the folder expected."""
    return benchmarks.local_plan([str(b) for b in cfg.eval.benchmarks], cfg.eval.datasets_dir, out_dir)


def has_stage(cfg: DictConfig, name: str) -> bool:
    return by_name(cfg, name) is not None


def chat_stages(cfg: DictConfig) -> list[str]:
    """The run's SFT stages and dpo, in chain order."""
    return [s.name for s in chain(cfg) if s.distributed and s.name != "pretrain"]


def models(cfg: DictConfig) -> dict[str, Path]:
    """{stage: its model folder}: the imported base model (routes with a base stage, when that stage is complete),
    then in chain order the complete final/ folders of eval.stages and eval.model_stage (which must be complete)."""
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
    found = found if main in found else {**found, main: run_dir / main / FINAL}  # checked above
    base = Manifest.load(run_dir / BASE) if has_stage(cfg, BASE) else None
    if base is not None and base.status == "complete":
        return {BASE: model_folder(run_dir / BASE), **found}
    return found


def external_inputs(cfg: DictConfig, name: str = "eval") -> list[Path]:
    """The evaluated final/ folders, the prompts, the task folders, eval.text_files and, on routes without shards,
    the chat stages' data files (their validation records are scored): a change to any reruns the stage. The
    imported base model is not hashed again: the base stage's manifest holds its files' hashes, and eval reads
    that sealed stage."""
    data = []
    if cfg.eval.benchmarks:
        data = benchmarks.dataset_files(benchmarks.resolve([str(b) for b in cfg.eval.benchmarks],
                                                           cfg.eval.datasets_dir))
    chat = [] if has_stage(cfg, "shards") else [
        f.path for s in chat_stages(cfg) for f in input_files(section(cfg, s), chat_kind(s), key_of(cfg, s))]
    return [*(p for s, p in models(cfg).items() if s != BASE), Path(str(cfg.eval.prompts)),
            *harness.task_data_files(task_folders(cfg)), *(Path(str(f)) for f in cfg.eval.text_files), *chat, *data]


def chat_sets(cfg: DictConfig, max_bytes: int) -> dict[str, list[str]]:
    """{"<stage>:validation": raw text of the stage's validation records} for every chat stage of the run: the same
    records the stage held out (split by prompt hash, kgov_train.chat), read again without a tokenizer."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:  # load_chat_data writes a rejects file; not eval's output
        for s in chat_stages(cfg):
            data = load_chat_data(section(cfg, s), chat_kind(s), key_of(cfg, s), Path(tmp) / s, int(cfg.seed), None)
            docs = [t for t in (texts.chat_record_text(r) for r in data.validation) if t]
            if docs:
                out[f"{s}:validation"] = texts.cap_bytes(docs, max_bytes)
            else:
                log.warning("eval: %s has no validation record (%s.validation_fraction); nothing of it is scored in "
                            "bits per byte", s, key_of(cfg, s))
    return out


def text_sets(ctx: StageContext) -> dict[str, list[str]]:
    """The named sets of raw documents scored in bits per byte (kgov_train.evaluation.texts)."""
    cfg, e = ctx.cfg, ctx.cfg.eval
    cap = int(e.max_bytes_per_set)
    sets: dict[str, list[str]] = {}
    if "shards" in ctx.upstream:
        clean = ctx.run_dir / "data" / "clean"
        if clean.is_dir():
            sets.update(texts.heldout_sets(ctx.upstream["shards"], clean, cap))
        else:
            log.warning("eval: %s missing; no held-out corpus text in bits per byte", clean)
    else:
        sets.update(chat_sets(cfg, cap))
    for name, docs in texts.text_file_sets([str(f) for f in e.text_files], cap).items():
        if name in sets:
            raise texts.TextsError(f"eval.text_files: the set name '{name}' is taken by the run's own texts")
        sets[name] = docs
    return sets


def shards_vocab(run_dir: Path) -> dict[str, int] | None:
    """The vocabulary the shards were cut with (<run_dir>/tokenizer/tokenizer.json), None when it is not there."""
    from tokenizers import Tokenizer

    path = run_dir / "tokenizer" / "tokenizer.json"
    return Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True) if path.is_file() else None


def reads_shards(tokenizer, vocab: dict[str, int] | None, stage: str) -> bool:
    """Whether the shards' token ids mean the same pieces to this model: its tokenizer holds every piece of the
    shards' vocabulary under the same id (without the shards' tokenizer at hand: every model but the base)."""
    if vocab is None:
        return stage != BASE
    own = tokenizer.get_vocab()
    return all(own.get(piece) == i for piece, i in vocab.items())


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

    shards = ctx.upstream.get("shards")  # none on the finetune route: no perplexity there
    windows = perplexity.validation_windows(shards, seq_len, int(e.max_tokens_per_source)) if shards else {}
    if shards and not windows:
        log.warning("eval: the validation split of %s is empty; no perplexity", shards)
    vocab = shards_vocab(ctx.run_dir) if windows else None
    sets = text_sets(ctx)
    if not sets:
        log.warning("eval: no text to score in bits per byte (no held-out text, no eval.text_files)")
    tasks = [str(t) for t in e.tasks]
    tasks_dir = out / "lm_eval_tasks"
    shutil.rmtree(tasks_dir, ignore_errors=True)
    folders = harness.resolve_task_dirs(task_folders(cfg), tasks_dir / "tasks") if tasks else []
    bench_plan = benchmark_plan(cfg, tasks_dir) if e.benchmarks else None
    # bundle entries verified before any model, with the hashes the pipeline just took of them (the stage's inputs)
    known = {i["path"]: i["sha256"] for i in (Manifest.load(out).inputs if bench_plan else [])}
    datasets = benchmarks.provenance(bench_plan, known) if bench_plan else {}
    manager = harness.task_manager([*folders, *(sorted(tasks_dir.glob("benchmark-*")) if bench_plan else [])]) \
        if tasks or bench_plan else None
    limit = int(e.limit) if e.limit is not None else None
    fewshot = int(e.num_fewshot) if e.num_fewshot is not None else None

    ppl: dict[str, Any] = {}
    bpb: dict[str, Any] = {}
    bench: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    kbench: dict[str, Any] = {}
    kraw: dict[str, Any] = {}
    gens: dict[str, list[dict[str, Any]]] = {}
    for stage, final in finals.items():
        log.info("eval: %s (%s)", stage, final)
        tokenizer = AutoTokenizer.from_pretrained(final)
        model = AutoModelForCausalLM.from_pretrained(final, dtype=torch.float32).to(device).eval()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if windows and reads_shards(tokenizer, vocab, stage):
            ppl[stage] = perplexity.perplexity(model, windows, int(e.batch_size), pad)
            log.info("eval: %s validation perplexity %s over %d tokens", stage, ppl[stage]["all"]["perplexity"],
                     ppl[stage]["all"]["tokens"])
        elif windows:
            log.info("eval: %s: its tokenizer is not the shards' one; no perplexity (see bits per byte)", stage)
        if sets:
            bpb[stage] = bits_per_byte.bits_per_byte(model, tokenizer, sets,
                                                     bits_per_byte.window_length(model, seq_len), int(e.batch_size), pad)
            log.info("eval: %s bits per byte %s", stage, {k: v["bits_per_byte"] for k, v in bpb[stage].items()})
        chat = stage not in ("pretrain", BASE) and bool(getattr(tokenizer, "chat_template", None))
        gens[stage] = generate.generate(model, tokenizer, prompts, int(e.max_new_tokens), chat)
        del model
        if tasks:
            res = harness.evaluate(final, tasks, manager, limit, int(e.batch_size), fewshot, device)
            bench[stage], raw[stage] = res["tasks"], res["raw"]
            log.info("eval: %s lm-eval %s", stage, {t: r["acc"] for t, r in bench[stage].items()})
        if bench_plan is not None:
            kbench[stage], kraw[stage] = run_benchmarks(bench_plan, final, manager, str(e.chat_template),
                                                        chat and stage != BASE, limit, int(e.batch_size), fewshot,
                                                        device)
            log.info("eval: %s benchmarks %s", stage, {n: b["score"] for n, b in kbench[stage].items()})

    side_by_side = [{"id": p["id"], "prompt": p["prompt"],
                     "outputs": {s: g[i]["output"] for s, g in gens.items()},
                     "modes": {s: g[i]["mode"] for s, g in gens.items()}} for i, p in enumerate(prompts)]
    with open(out / "generations.jsonl", "w", encoding="utf-8") as f:
        for row in side_by_side:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (out / "lm_eval_results.json").write_text(json.dumps(raw, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "benchmark_results.json").write_text(json.dumps(kraw, ensure_ascii=False, indent=2) + "\n",
                                                encoding="utf-8")

    main = str(e.model_stage)
    by_stage = {s: {k: v["bits_per_byte"] for k, v in b.items()} for s, b in bpb.items()}
    vs_base = {k: round(v - by_stage[BASE][k], 6) for k, v in by_stage.get(main, {}).items()
               if BASE in by_stage and v is not None and by_stage[BASE].get(k) is not None}
    run = report.gather_run(ctx.run_dir, [s.name for s in chain(cfg) if s.distributed])
    for old in out.glob("*.png"):
        old.unlink()
    images = report.plots(out, run, ppl, bench, by_stage)
    full = {"model_stage": main, "stages": list(finals), "models": {s: str(p) for s, p in finals.items()},
            "base": BASE if BASE in finals else None, "route": str(cfg.get("route") or "scratch"),
            "seq_len": seq_len, "max_tokens_per_source": int(e.max_tokens_per_source),
            "max_bytes_per_set": int(e.max_bytes_per_set), "tasks": tasks, "limit": limit,
            "text_sets": {k: {"documents": len(d), "bytes": sum(len(x.encode("utf-8")) for x in d)}
                          for k, d in sets.items()},
            "perplexity": ppl, "bits_per_byte": bpb, "bits_per_byte_vs_base": vs_base, "lm_eval": bench,
            "benchmarks": kbench, "benchmark_datasets": datasets, "chat_template": str(e.chat_template),
            "generations": side_by_side, "run": run, "plots": images}
    (out / "report.json").write_text(json.dumps(full, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report.markdown(full, images), encoding="utf-8")
    shutil.rmtree(out / "papers", ignore_errors=True)
    write_evaluated(ctx.run_dir, list(finals), out / "papers")  # the cards read report.json

    metrics: dict[str, Any] = {
        "model_stage": main,
        "stages": list(finals),
        "perplexity": ppl.get(main, {}).get("all", {}).get("perplexity"),
        **{f"acc_{t}": r["acc"] for t, r in bench.get(main, {}).items()},
        "perplexity_by_stage": {s: {"all": p["all"]["perplexity"], **{k: v["perplexity"] for k, v in p["sources"].items()}}
                                for s, p in ppl.items()},
        "bits_per_byte_by_stage": by_stage,
        "bits_per_byte_vs_base": vs_base,  # model_stage minus base, per set: below 0 = fewer bits, better
        "accuracy_by_stage": {s: {t: r["acc"] for t, r in b.items()} for s, b in bench.items()},
        "items_by_task": {t: r["n"] for t, r in bench.get(main, {}).items()},
        # per stage and requested benchmark: its score as lm-eval aggregates it (see report.json for the rest)
        "benchmarks_by_stage": {s: {n: b["score"] for n, b in k.items()} for s, k in kbench.items()},
        "benchmark_datasets": datasets,  # hub id -> the local copy read, and the bundle it came in (papers)
    }
    return StageResult(outputs=[*OUTPUTS, *images, "lm_eval_tasks"], metrics=metrics)


def chat_runs(plan: benchmarks.Plan, mode: str, chat_model: bool) -> dict[bool, list[str]]:
    """{through the chat template?: the benchmarks run so} for one model (eval.chat_template)."""
    runs: dict[bool, list[str]] = {}
    for name in plan.names:
        use = chat_model and (mode == "always" or (mode == "auto" and plan.generative(name)))
        runs.setdefault(use, []).append(name)
    return runs


def run_benchmarks(plan: benchmarks.Plan, final: Path, manager, mode: str, chat_model: bool, limit: int | None,
                   batch_size: int, fewshot: int | None, device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The requested benchmarks on one model: multiple-choice ones on the plain prompt (unless eval.chat_template
    is always), generative ones through the model's chat template (unless never); a model without a template
    (pretrain, the base model) always reads plain prompts. Returns (summary per benchmark, lm-eval's raw results)."""
    runs = chat_runs(plan, mode, chat_model)
    results: dict[str, Any] = {}
    samples: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for use, names in runs.items():
        try:
            res = harness.run(final, names, manager, limit, batch_size, fewshot, device, chat=use)
        except Exception as e:  # a local copy lm-eval cannot read (columns, configs, splits): name what it read
            folders = sorted({leaf.dataset_path for n in names for leaf in plan.leaves[n]})
            raise benchmarks.BenchmarkError(
                f"eval.benchmarks: {names} failed on {final}: {benchmarks.said(e)}; the local copies read: "
                f"{', '.join(folders)} (are they the hub's files, as downloaded?)") from e
        raw["chat" if use else "plain"] = res
        results.update(res["results"] or {})
        samples.update(res.get("n-samples") or {})
    summary = benchmarks.summarize(plan, results, samples)
    for use, names in runs.items():
        for name in names:
            summary[name]["chat_template"] = use
    return summary, raw
