"""Checks a typed schema cannot express, run before any stage does heavy work.

Every message names the dotted key at fault, so a researcher editing YAML sees
which line to fix.
"""

from __future__ import annotations

import glob
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from data_prep.corpus.readers import encoding_problem
from kgov_train.config.sections import SectionError, chat_kind, key_of, section, sft_stage_names, where


class RecipeError(ValueError):
    pass


def resolve_globs(patterns: list[str], key: str) -> list[Path]:
    """Expand file names and globs in order; every entry must match at least one file."""
    files: list[Path] = []
    for i, pattern in enumerate(patterns):
        matches = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            raise RecipeError(f"{key}[{i}]: no file matches '{pattern}'")
        files += [Path(m).resolve() for m in matches]
    return list(dict.fromkeys(files))


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


def validate(cfg: DictConfig) -> None:
    errors: list[str] = []

    def check(ok: bool, msg: str) -> None:
        if not ok:
            errors.append(msg)

    from kgov_train.stages import chain

    names = [s.name for s in chain(cfg)]
    unknown = [s for s in cfg.stages if s not in names and s != "sft"]
    check(not unknown, f"stages: unknown stage(s) {unknown}; the chain is {names}")
    check(len(cfg.stages) > 0, "stages: empty list; name at least one of " + ", ".join(names))
    check(cfg.nproc_per_node >= 1, f"nproc_per_node: must be >= 1, got {cfg.nproc_per_node}")
    check(cfg.nnodes >= 1, f"nnodes: must be >= 1, got {cfg.nnodes}")
    check(cfg.cluster.device in ("cpu", "cuda"), f"cluster.device: 'cpu' or 'cuda', got '{cfg.cluster.device}'")
    check(cfg.cluster.backend in ("gloo", "nccl"), f"cluster.backend: 'gloo' or 'nccl', got '{cfg.cluster.backend}'")
    check(cfg.cluster.precision in ("fp32", "bf16", "fp16"), f"cluster.precision: fp32, bf16 or fp16, got '{cfg.cluster.precision}'")
    check(not (cfg.cluster.device == "cpu" and cfg.cluster.backend == "nccl"), "cluster.backend: nccl needs cluster.device=cuda; use gloo on CPU")
    check(not (cfg.cluster.device == "cpu" and cfg.cluster.precision != "fp32"),
          f"cluster.precision: {cfg.cluster.precision} training needs a GPU; use fp32 with cluster.device=cpu")

    stages = set(cfg.stages)
    if "sft" in stages:  # every SFT stage
        stages |= set(sft_stage_names(cfg))
    if "data" in stages:
        try:
            source_files(cfg)
        except RecipeError as e:
            errors.append(str(e))
        check(cfg.data.min_chars >= 0, f"data.min_chars: must be >= 0, got {cfg.data.min_chars}")
        check(cfg.data.max_chars > cfg.data.min_chars, "data.max_chars: must exceed data.min_chars")
        check(cfg.data.compression in (None, "gzip"), f"data.compression: null or gzip, got '{cfg.data.compression}'")
        for block in ("dedup", "pii"):  # the blocks' own checks, before any file is read
            if not cfg.data[block].get("enabled", True):
                continue
            try:
                OmegaConf.to_object(cfg.data[block]).validate()
            except ValueError as e:
                errors.append(str(e))
    if "tokenizer" in stages:
        check(cfg.tokenizer.model_type in ("bpe", "unigram"), f"tokenizer.model_type: bpe or unigram, got '{cfg.tokenizer.model_type}'")
        check(cfg.tokenizer.vocab_size >= 300, f"tokenizer.vocab_size: at least 300 (256 byte pieces + specials), got {cfg.tokenizer.vocab_size}")
        check(0 < cfg.tokenizer.character_coverage <= 1, "tokenizer.character_coverage: in (0, 1]")
        check(0 <= cfg.tokenizer.heldout_fraction < 1, f"tokenizer.heldout_fraction: in [0, 1), got {cfg.tokenizer.heldout_fraction}")
        n = cfg.tokenizer.input_sentence_size
        check(n == 0 or n > 100, f"tokenizer.input_sentence_size: 0 (all) or more than 100 (sentencepiece's minimum), got {n}")
        check(cfg.tokenizer.sample_chars > 0, f"tokenizer.sample_chars: must be > 0, got {cfg.tokenizer.sample_chars}")
        try:
            from data_prep.tokenizer.specials import user_defined
            user_defined(list(cfg.tokenizer.user_defined_symbols))
        except ValueError as e:
            errors.append(str(e))
        for key in ("extend_from", "baseline"):  # local folders only: nothing is fetched from a hub
            folder = cfg.tokenizer[key]
            check(folder is None or (Path(folder) / "tokenizer.json").is_file(),
                  f"tokenizer.{key}: {folder} is not a local tokenizer folder (no tokenizer.json)")
    if "shards" in stages:
        check(0 <= cfg.shards.validation_fraction < 1, "shards.validation_fraction: in [0, 1)")
        check(cfg.shards.workers >= 1, f"shards.workers: must be >= 1, got {cfg.shards.workers}")

    if "pretrain" in stages:
        from kgov_train.train.schedule import ScheduleError, pretrain_schedule

        try:
            pretrain_schedule(cfg.pretrain, int(cfg.nnodes) * int(cfg.nproc_per_node))
        except ScheduleError as e:
            errors.append(str(e))
        sp = cfg.pretrain.spike
        check(sp.policy in ("none", "skip", "rollback"), f"pretrain.spike.policy: none, skip or rollback, got '{sp.policy}'")
        check(sp.factor > 1, f"pretrain.spike.factor: must be > 1, got {sp.factor}")
    training = [n for n in ("pretrain", *sft_stage_names(cfg), "dpo") if n in stages]
    sections = {}
    for name in training:
        try:
            sections[name] = s = section(cfg, name)
        except SectionError as e:
            errors.append(str(e))
            continue
        key = key_of(cfg, name)
        for k in ("max_steps", "save_steps", "logging_steps", "micro_batch_size", "gradient_accumulation_steps"):
            check(s[k] >= 1, f"{where(cfg, name, k)}: must be >= 1, got {s[k]}")
        check(s.zero_stage is None or s.zero_stage in (0, 1, 2, 3),
              f"{where(cfg, name, 'zero_stage')}: 0, 1, 2 or 3, got {s.zero_stage}")
        if name != "pretrain":
            errors += chat_stage_problems(cfg, name, key, s)
    zero = cfg.deepspeed.get("zero_optimization", {}) if cfg.deepspeed else {}
    if "pretrain" in stages:
        check(cfg.pretrain.seq_len <= cfg.model.max_position_embeddings,
              f"pretrain.seq_len: {cfg.pretrain.seq_len} exceeds model.max_position_embeddings={cfg.model.max_position_embeddings}")
        check(cfg.model.hidden_size % cfg.model.num_attention_heads == 0,
              "model.hidden_size: must be divisible by model.num_attention_heads")
        if cfg.model.init_from:
            check(Path(cfg.model.init_from).is_dir(), f"model.init_from: '{cfg.model.init_from}' is not a local folder (no hub downloads)")
    if zero.get("offload_param") and any(s.zero_stage not in (None, 3) for s in sections.values()):
        errors.append("deepspeed.zero_optimization.offload_param: needs ZeRO-3; a training stage sets zero_stage below 3")

    if errors:  # an `sft` key inherited by several named SFT stages is reported once
        raise RecipeError("invalid recipe:\n  " + "\n  ".join(dict.fromkeys(errors)))


# TRL 1.16 DPOConfig.loss_type values (checked here so that a typo fails before any model loads)
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


def chat_stage_problems(cfg: DictConfig, name: str, key: str, s: DictConfig) -> list[str]:
    """What is wrong with an SFT or DPO stage's section (`key` is where its own keys live, for the messages)."""
    from kgov_train.chat import dataset_specs

    errors = []
    kind = chat_kind(name)
    try:
        dataset_specs(s, kind, key)  # both or neither of data/datasets, globs, formats, weights: the first problem
    except RecipeError as e:
        errors.append(str(e))
    if not 0 <= s.validation_fraction < 1:
        errors.append(f"{where(cfg, name, 'validation_fraction')}: in [0, 1), got {s.validation_fraction}")
    if s.overlong not in ("truncate", "drop"):
        errors.append(f"{where(cfg, name, 'overlong')}: truncate or drop, got '{s.overlong}'")
    if kind == "dpo":
        if s.loss_type not in DPO_LOSS_TYPES:
            errors.append(f"dpo.loss_type: one of {', '.join(DPO_LOSS_TYPES)}; got '{s.loss_type}'")
        if not s.beta > 0:
            errors.append(f"dpo.beta: must be > 0, got {s.beta}")
    from kgov_train.train.lora import qlora_problem

    problem = qlora_problem(cfg, name)  # torch-free: needs LoRA on, a CUDA device and bitsandbytes
    if problem:
        errors.append(problem)
    if kind == "sft" and s.packing:
        from kgov_train.train.packing import PackingError, packing_kwargs

        try:
            packing_kwargs(cfg, name)
        except PackingError as e:
            errors.append(str(e))
    if s.lora.enabled:
        if s.lora.r < 1:
            errors.append(f"{where(cfg, name, 'lora.r')}: must be >= 1, got {s.lora.r}")
        if not 0 <= s.lora.dropout < 1:
            errors.append(f"{where(cfg, name, 'lora.dropout')}: in [0, 1), got {s.lora.dropout}")
        if not s.lora.target_modules:
            errors.append(f"{where(cfg, name, 'lora.target_modules')}: empty; name the linear layers to adapt "
                          "(e.g. q_proj, v_proj)")
    return errors
