"""data stage: the recipe's corpus files -> clean/ and rejected/ (jsonl.gz), via data_prep.corpus.

Metrics promise docs_in == docs_kept + docs_rejected; rejected/ holds every dropped
record with its reason and location (<source>/<file>:<line>). Records name their input by
source and path below the source's root only, so the outputs do not depend on where the
corpus is mounted; the manifest's `inputs` map each (source, file) to its absolute path and sha256.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from data_prep.corpus import FORMATS, CorpusSettings, input_format, prepare_corpus
from data_prep.corpus.readers import InputFile, encoding_problem, relative_path, source_roots
from kgov_train.config.inputs import resolve_globs
from kgov_train.errors import RecipeError
from kgov_train.evaluation import benchmark_items, benchmarks
from kgov_train.manifest import Manifest
from kgov_train.run_folder import StageContext, StageResult

log = logging.getLogger("kgov_train")


def source_files(cfg: DictConfig) -> list[tuple[DictConfig, list[Path]]]:
    """Each corpus source with its resolved files: `data.sources`, or the one-source shorthand
    (`data.inputs`, `data.source`, `data.license`). A file may belong to one source only."""
    d = cfg.data
    if d.sources and d.inputs:
        raise RecipeError("data.inputs: set either data.sources or data.inputs (one-source shorthand), not both")
    if not d.sources and not d.inputs:
        raise RecipeError("data.inputs: empty; list the corpus files or globs (or use data.sources)")
    sources = d.sources or [OmegaConf.create({"name": d.source, "inputs": list(d.inputs), "license": d.license,
                                              "weight": 1.0, "text_key": None, "id_key": None,
                                              "encoding": None})]
    prefix = "data.sources[{}]" if d.sources else "data"
    out, owner, names = [], {}, set()
    for i, src in enumerate(sources):
        key = prefix.format(i)
        if src.name in names:
            raise RecipeError(f"{key}.name: '{src.name}' names two sources")
        names.add(src.name)
        if d.sources and not src.inputs:
            raise RecipeError(f"{key}.inputs: empty; list the source's files or globs")
        if src.weight <= 0:
            raise RecipeError(f"{key}.weight: must be > 0, got {src.weight}")
        enc_key = f"{key}.encoding" if src.encoding else "data.encoding"
        problem = encoding_problem(src.encoding or d.encoding)
        if problem:  # here, not as a ValueError from the reader after the files were hashed
            raise RecipeError(f"{enc_key}: {problem}")
        files = resolve_globs(list(src.inputs), f"{key}.inputs")
        for f in files:
            if f in owner:
                raise RecipeError(f"{key}.inputs: {f} also belongs to source '{owner[f]}'")
            owner[f] = src.name
        out.append((src, files))
    return out


def check(cfg: DictConfig, name: str = "data") -> list[str]:
    errors = []
    try:
        source_files(cfg)
    except RecipeError as e:
        errors.append(str(e))
    d = cfg.data
    if d.min_chars < 0:
        errors.append(f"data.min_chars: must be >= 0, got {d.min_chars}")
    if d.max_chars <= d.min_chars:
        errors.append("data.max_chars: must exceed data.min_chars")
    if decontam_benchmarks(cfg):
        try:
            benchmark_plan(cfg)
        except benchmarks.BenchmarkError as e:
            errors.append(str(e))
    for block in ("dedup", "pii"):  # the blocks' own checks, before any file is read
        if d[block].get("enabled", True):
            try:
                OmegaConf.to_object(d[block]).validate()
            except ValueError as e:
                errors.append(str(e))
    return errors


BENCHMARKS = "benchmarks"  # <stage_dir>/benchmarks/<name>.jsonl: the benchmark items decontamination checks
DECONTAMINATION = "decontamination"  # the role of the benchmark copies among the stage's inputs


def decontam_benchmarks(cfg: DictConfig) -> list[str]:
    """The benchmarks whose items decontamination checks: data.decontam.benchmarks, null meaning eval.benchmarks;
    none while data.decontam.enabled is false."""
    dc = cfg.data.decontam
    names = dc.benchmarks if dc.benchmarks is not None else cfg.eval.benchmarks
    return [str(n) for n in names] if dc.enabled else []


def benchmark_plan(cfg: DictConfig) -> benchmarks.Plan:
    key = "data.decontam.benchmarks" if cfg.data.decontam.benchmarks is not None else "eval.benchmarks"
    return benchmarks.resolve(decontam_benchmarks(cfg), cfg.eval.datasets_dir, key)


def external_inputs(cfg: DictConfig, name: str = "data") -> list[Path]:
    files = [f for _, fs in source_files(cfg) for f in fs]
    unsupported = [str(f) for f in files if input_format(f) is None]
    if unsupported:
        shown = ", ".join(unsupported[:5]) + (f" (+{len(unsupported) - 5} more)" if len(unsupported) > 5 else "")
        key = "data.sources[].inputs" if cfg.data.sources else "data.inputs"
        raise RecipeError(f"{key}: unsupported file type: {shown}; readable: {', '.join(FORMATS)}")
    if decontam_benchmarks(cfg):  # the local copies the items are read from: a new copy reruns the stage
        files += benchmarks.dataset_files(benchmark_plan(cfg))
    return files


def input_labels(cfg: DictConfig, name: str = "data") -> dict[str, dict[str, str]]:
    """Per input path: the source and the `file` (path below the source's root) its records carry,
    added to the manifest's `inputs` next to the absolute path and sha256."""
    inputs = corpus_inputs(cfg, {})
    roots = source_roots(inputs)
    labels = {i.path: {"source": i.source, "file": relative_path(i.path, roots[i.source])} for i in inputs}
    if decontam_benchmarks(cfg):  # read to check the corpus against, not trained on: the papers keep them apart
        for hub_id, folder in benchmark_plan(cfg).datasets.items():
            for path in benchmarks.folder_files(folder):
                labels[str(path)] = {"role": DECONTAMINATION, "benchmark": hub_id,
                                     "file": str(path.relative_to(folder))}
    return labels


def corpus_inputs(cfg: DictConfig, hashes: dict[str, str]) -> list:
    """Every input file as a reader InputFile, with its source's provenance and keys.

    `hashes` (path -> sha256, from this stage's manifest) spares the reader a second pass over the files."""
    d = cfg.data
    return [InputFile(str(f), src.name, src.license, src.text_key or d.text_key, src.id_key or d.id_key,
                      hashes.get(str(f), ""), encoding=src.encoding or d.encoding)
            for src, files in source_files(cfg) for f in files]


def run(ctx: StageContext) -> StageResult:
    d = ctx.cfg.data
    settings = CorpusSettings(
        min_chars=d.min_chars, max_chars=d.max_chars, tasks=d.tasks, workers=d.workers, compression=d.compression,
        normalize=_block(d.normalize), pii=_block(d.pii), quality=_block(d.quality), dedup=_block(d.dedup),
        decontam=_block(d.decontam), executor=d.executor, slurm=_block(d.slurm),
        job_name=f"kgov-{ctx.cfg.recipe_name}-data",
    )
    names = decontam_benchmarks(ctx.cfg)
    items: dict[str, Path] = {}
    if names:
        items = benchmark_items.write_items(benchmark_plan(ctx.cfg), ctx.stage_dir / BENCHMARKS,
                                            settings.decontam.text_key)
        settings.decontam.eval_files = [*settings.decontam.eval_files, *(str(p) for p in items.values())]
    if settings.slurm.partition is None:
        settings.slurm.partition = ctx.cfg.cluster.cpu_partition or ctx.cfg.cluster.partition
    manifest = Manifest.load(ctx.stage_dir)
    hashes = {i["path"]: i["sha256"] for i in (manifest.inputs if manifest else [])}
    weights = {src.name: float(src.weight) for src, _ in source_files(ctx.cfg)}
    report = prepare_corpus(corpus_inputs(ctx.cfg, hashes), ctx.stage_dir, settings, weights)
    if report.docs_kept == 0:
        raise RuntimeError(
            f"data stage kept 0 of {report.docs_in} documents; rejects by reason: {report.rejects_summary()}; "
            f"see {ctx.stage_dir / 'rejected'}"
            + (f" (data.min_chars={d.min_chars})" if report.rejected_by_reason.get("too_short") else ""))
    metrics = report.metrics()
    if items:  # per benchmark: the documents whose first eval n-gram match was one of its items
        metrics["decontam_hits_by_benchmark"] = {n: report.decontam_hits.get(str(p), 0) for n, p in items.items()}
        log.info("data: decontamination hits per benchmark: %s", metrics["decontam_hits_by_benchmark"])
    return StageResult(outputs=["clean", "rejected", *([BENCHMARKS] if items else [])], metrics=metrics)


def _block(node: DictConfig):
    """A block's settings node as the dataclass instance the corpus code takes."""
    return OmegaConf.to_object(node)
