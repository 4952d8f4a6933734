"""The checks of a base model that need transformers, none of which loads a weight: the config and tokenizer as stock
transformers loads them (local files only), and the model built on the meta device, whose every parameter must be
in the weights with the same shape (tied embeddings stored once are fine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from kgov_train.foundation.weights import Tensor

SPECIAL = ("bos", "eos", "pad", "unk")
SHOWN = 3  # mismatched weights named in a problem line; the rest are counted


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def pickle_tensors(folder: Path, pickles: list[Path]) -> tuple[dict[str, Tensor], list[str]]:
    """Shapes and dtypes of pickle checkpoints (base.allow_pickle), loaded onto the meta device with torch's
    weights-only unpickler (memory-mapped: no weight is read). Files that hold no state dict are skipped, noted."""
    import torch

    tensors: dict[str, Tensor] = {}
    notes: list[str] = []
    for f in pickles:
        try:
            try:
                state = torch.load(f, map_location="meta", weights_only=True, mmap=True)
            except RuntimeError:  # the legacy (pre-zip) format cannot be memory-mapped
                state = torch.load(f, map_location="meta", weights_only=True)
        except Exception as e:
            notes.append(f"{f}: not a weights-only state dict, skipped ({_first_line(e)})")
            continue
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        for name, t in (state.items() if isinstance(state, dict) else ()):
            if isinstance(t, torch.Tensor):
                tensors[name] = Tensor(str(f.relative_to(folder)), str(t.dtype).removeprefix("torch."),
                                       tuple(t.shape))
    return tensors, notes


def _special_tokens(tokenizer: Any) -> dict[str, dict[str, Any] | None]:
    out: dict[str, dict[str, Any] | None] = {}
    for kind in SPECIAL:
        token, token_id = getattr(tokenizer, f"{kind}_token", None), getattr(tokenizer, f"{kind}_token_id", None)
        out[kind] = None if token is None and token_id is None else {"token": str(token), "id": token_id}
    return out


def _renamer(model: Any) -> Callable[[str], tuple[str, bool]]:
    """checkpoint key -> (the model's name for it, whether a converter that merges or splits tensors takes it), as
    transformers renames keys when it loads (e.g. GPT-NeoX's embed_out -> lm_head, the base model's prefix added or
    dropped, gamma/beta -> weight/bias)."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    transforms = get_model_conversion_mapping(model)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    meta = model.state_dict()
    prefix = getattr(model, "base_model_prefix", None) or None

    def rename(key: str) -> tuple[str, bool]:
        name, converter = rename_source_key(key, renamings, converters, prefix, meta)
        return name, converter is not None

    return rename


def _compare(folder: Path, model: Any, tensors: dict[str, Tensor], key: str) -> tuple[dict[str, Any], list[str]]:
    """Every parameter of the meta model against the weights: missing and mis-shaped ones are problems; weights the
    model has no parameter or buffer for are noted. Tensors a converter merges (e.g. per-expert weights stacked) are
    counted present, their shapes not compared."""
    rename = _renamer(model)
    stored: dict[str, list[tuple[str, Tensor, bool]]] = {}
    for name in sorted(tensors):  # sorted: transformers' grouped renamings expect keys in this order
        target, converted = rename(name)
        stored.setdefault(target, []).append((name, tensors[name], converted))
    groups: dict[int, list[tuple[str, Any]]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append((name, p))
    missing: list[str] = []
    wrong: list[tuple[str, Tensor, tuple[int, ...]]] = []
    for members in groups.values():
        found = [(hit, tuple(p.shape)) for name, p in members for hit in stored.get(name, [])]
        if not found:
            missing.append(members[0][0])
        wrong += [(n, t, want) for (n, t, converted), want in found if not converted and t.shape != want]
    problems = []
    if missing:
        tie = model.config.get_text_config().tie_word_embeddings
        more = f" (+{len(missing) - SHOWN} more)" if len(missing) > SHOWN else ""
        problems.append(f"{key}.path: {folder}: {len(missing)} model parameter(s) not in the weights: "
                        f"{', '.join(missing[:SHOWN])}{more}; config.json tie_word_embeddings={tie}")
    if wrong:
        shown = "; ".join(f"{n} is {list(t.shape)} in {t.file}, config.json makes {list(w)}"
                          for n, t, w in wrong[:SHOWN])
        problems.append(f"{key}.path: {folder}: {len(wrong)} weight(s) do not match config.json's shapes: {shown}"
                        + (f" (+{len(wrong) - SHOWN} more)" if len(wrong) > SHOWN else ""))
    known = set(model.state_dict())
    unexpected = sorted(n for target, hits in stored.items() if target not in known for n, _, _ in hits)
    facts = {"parameters": sum(p.numel() for p in model.parameters()),
             "tied_embeddings": any(len(m) > 1 for m in groups.values()),
             "embedding_rows": int(model.get_input_embeddings().weight.shape[0]), "unexpected_weights": unexpected}
    return facts, problems


def inspect_model(folder: Path, tensors: dict[str, Tensor], trust_remote_code: bool,
                  key: str = "base") -> tuple[dict[str, Any], list[str]]:
    """(facts, problems): the config, tokenizer and meta-device model of the folder against its weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    facts: dict[str, Any] = {}
    problems: list[str] = []
    kw = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(folder, **kw)
    except Exception as e:
        return facts, [f"{key}.path: {folder / 'config.json'} cannot be loaded by transformers ({_first_line(e)})"]
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    facts["architecture"] = (config.architectures or [None])[0]
    facts["model_type"] = config.model_type
    facts["vocab_size"] = getattr(text, "vocab_size", None)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    facts["config_dtype"] = str(dtype).removeprefix("torch.") if dtype is not None else None
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kw)
    except Exception as e:
        problems.append(f"{key}.path: {folder}: the tokenizer cannot be loaded by transformers ({_first_line(e)})")
        tokenizer = None
    if tokenizer is not None:
        facts["tokenizer_class"] = type(tokenizer).__name__
        facts["tokenizer_size"] = len(tokenizer)
        facts["chat_template"] = bool(getattr(tokenizer, "chat_template", None))
        facts["special_tokens"] = _special_tokens(tokenizer)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as e:
        problems.append(f"{key}.path: {folder / 'config.json'}: transformers cannot build a causal language model "
                        f"from it ({_first_line(e)})")
        return facts, problems
    model_facts, shape_problems = _compare(folder, model, tensors, key)
    facts.update(model_facts)
    problems += shape_problems
    rows, size = facts["embedding_rows"], facts.get("tokenizer_size")
    if size is not None and size > rows:
        problems.append(f"{key}.path: {folder}: the tokenizer has {size} tokens but the embedding has {rows} rows; "
                        "ids past the last row cannot be embedded")
    return facts, problems
