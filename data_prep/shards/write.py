"""Pre-tokenise the clean corpus into flat token files and a training mixture. Used by kgov_train.stages.shards.

<out>/train-00003-000.bin         token ids of input file 3 (sorted order), raw little-endian uint16
                                  (vocab <= 65536) or uint32; -001, -002 ... when it rolls over
<out>/train-00003-000.idx.npy     int64 cumulative end offset of each document in that file
<out>/train-00003-000.docs.npy    per document: source number and sha256(id)[:8] (the mixture's inputs)
<out>/validation-00003-000.*      the same for validation
<out>/train-mixture.npy           the train document schedule (data_prep.shards.mixture); only when mixing
<out>/index.json                  format, dtype, special ids and layout, tokenizer sha256, sources, split rule, files,
                                  per-source counts and the mixture; written last

Each document is stored as  bos text eos  with the tokenizer's own special tokens (read from the
tokenizer folder by data_prep.tokenizer.special_ids): bos marks a document start (`tokenizer(text)`
starts with it too), eos ends it (generation stops there); `text eos` when the tokenizer has no bos
(Qwen2) or its bos is its eos (GPT-NeoX). The project's tokenizer gives <s>=1 text </s>=2. Ids are
those of tokenizer.json with special-token matching off (transformers' split_special_tokens=True): a
literal "</s>" or "<|user|>" in a web page is text, not a control token. index.json records the ids
(pad_token_id null when there is none) and the layout.

Two passes over the corpus, both in parallel workers (data_prep.shards.encode): the split scan
(per source cutoffs, data_prep.shards.split), then tokenising. Resumable by input file: after
each input file's outputs are closed, progress.json records them (atomically); an interrupted
run with the same settings skips those files, removes any partial output and produces the same
bytes as an uninterrupted one. progress.json is removed once index.json is written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from data_prep.hashing import sha256_file
from data_prep.shards import encode as E
from data_prep.shards import mixture as MX
from data_prep.shards.files import SplitWriter, save_npy
from data_prep.shards.split import SplitScan
from data_prep.tokenizer.special_ids import SpecialTokensError, read_special_tokens
from data_prep.tokenizer.corpus import clean_files

log = logging.getLogger("data_prep.shards")

FORMAT = "kgov-shards/2"
SPLITS = ("train", "validation")
INDEX, PROGRESS, MIXTURE = "index.json", "progress.json", "train-mixture.npy"
OUTPUTS = ("train-*", "validation-*", INDEX, "*.tmp")  # what a run may leave; all else in out_dir is not ours


class ShardsWriteError(ValueError):
    pass


class MixtureError(ShardsWriteError):
    """The weights do not fit the corpus's sources."""


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def write_json(path: Path, data: dict) -> None:
    """Atomically: a reader (or a resumed run) sees the old or the new file, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _scan(enc: E.Encoder, files: list[Path], fraction: float, k: int) -> tuple[dict[str, SplitScan], list[str]]:
    """Per-source split summaries over the corpus, and each file's sha256."""
    scans: dict[str, SplitScan] = {}
    hashes = []
    for _, (part, sha) in enc.map_ordered((None, E.scan_file, (str(p), fraction, k)) for p in files):
        hashes.append(sha)
        for source, scan in part.items():
            scans[source] = scans[source].merge(scan) if source in scans else scan
    return scans, hashes


def _clear(out_dir: Path, keep: set[str]) -> None:
    for pattern in OUTPUTS:
        for p in out_dir.glob(pattern):
            if p.name not in keep:
                p.unlink()


def _load_progress(out_dir: Path, settings: dict) -> dict:
    """Finished input files of an interrupted run with the same settings ({} otherwise); clears everything else."""
    path = out_dir / PROGRESS
    done: dict = {}
    keep: set[str] = set()
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("settings") == settings:
            done = old["files"]
            keep = {f[k] for e in done.values() for s in SPLITS for f in e[s] for k in ("path", "index", "docs")}
    except (OSError, ValueError, KeyError, TypeError):
        done, keep = {}, set()
    missing = sorted(n for n in keep if not (out_dir / n).is_file())
    if missing:
        log.warning("shards: %s listed in %s but missing; starting over", missing[0], path)
        done, keep = {}, set()
    _clear(out_dir, keep)
    return done


def _encode_files(enc: E.Encoder, todo: list[tuple[int, Path]], rel: dict[int, str], out_dir: Path, dtype: np.dtype,
                 max_tokens: int, batch_size: int, cutoffs: dict[str, int], numbers: dict[str, int],
                 bar: tqdm) -> Iterator[tuple[int, dict]]:
    """(input no, its progress entry) per input file of `todo`, once its outputs are closed."""
    def tasks():
        for no, path in todo:
            for first, lines in E.line_batches(path, batch_size):
                yield no, E.encode, (str(path), first, lines, cutoffs, numbers)
            yield no, None, "end"  # passes through in order: the file is complete

    names = sorted(numbers, key=numbers.get)
    writers, counts = None, None
    for no, result in enc.map_ordered(tasks()):
        if writers is None:
            writers = {s: SplitWriter(out_dir, s, dtype, max_tokens, no, rel[no]) for s in SPLITS}
            counts = {s: np.zeros((3, len(names)), np.int64) for s in SPLITS}  # tokens, documents, chars
        if result == "end":
            entry = {s: writers[s].close() for s in SPLITS}
            entry["sources"] = {s: {n: dict(zip(("tokens", "documents", "chars"), map(int, counts[s][:, i])))
                                    for i, n in enumerate(names) if counts[s][1, i]} for s in SPLITS}
            writers = None
            yield no, entry
            continue
        for s, e in result.items():
            writers[s].add(e.tokens, e.lengths, e.meta)
            src = e.meta["source"]
            for row, w in enumerate((e.lengths, None, e.chars)):
                counts[s][row] += np.bincount(src, weights=w, minlength=len(names)).astype(np.int64)
            bar.update(len(e.lengths))


def write_shards(clean_dir: Path, tokenizer_dir: Path, out_dir: Path, *, validation_fraction: float,
                 min_validation_docs: int, max_tokens_per_file: int, batch_size: int, workers: int = 2,
                 weights: dict[str, float] | None = None, seed: int = 0,
                 on_file_done: Callable[[str], None] | None = None) -> dict:
    """Tokenise every document of clean_dir into out_dir; returns metrics (the index is in index.json).

    weights: source -> relative share of train tokens (None: no mixing, the train stream is the files in order).
    on_file_done(relative input path) is called once an input file is recorded as done.
    """
    out_dir, clean_dir, tokenizer_json = Path(out_dir), Path(clean_dir), Path(tokenizer_dir) / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise FileNotFoundError(f"{tokenizer_json}: missing; run the tokenizer stage first")
    if workers < 1 or batch_size < 1 or max_tokens_per_file < 1:
        raise ShardsWriteError(f"shards.workers, shards.batch_size and shards.max_tokens_per_file must be >= 1, got "
                               f"{workers}, {batch_size}, {max_tokens_per_file}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX).unlink(missing_ok=True)  # written last: until then the folder is unfinished
    tok = E.load_tokenizer(str(tokenizer_json))
    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    dtype = dtype_for(vocab_size)
    specials = _special_tokens(Path(tokenizer_dir))
    frame = (specials.doc_prefix(), [specials.eos_id])
    files = clean_files(clean_dir)
    rel = {no: str(p.relative_to(clean_dir)) for no, p in enumerate(files)}

    with E.Encoder(workers, tok, dtype, frame) as enc:
        t0 = time.time()
        scans, input_sha256 = _scan(enc, files, validation_fraction, min_validation_docs)
        names = sorted(scans)
        if len(names) > 1 << 16:
            raise ShardsWriteError(f"{clean_dir}: {len(names)} values of key 'metadata.source'; at most 65536")
        cutoffs = {s: scans[s].cutoff() for s in names}
        settings = {  # everything the per-file outputs depend on
            "format": FORMAT, "tokenizer_sha256": sha256_file(tokenizer_json), "dtype": dtype.name,
            "max_tokens_per_file": max_tokens_per_file, "sources": names, "cutoffs": cutoffs,
            "special_tokens": _special_entry(specials),
            "inputs": [[rel[no], sha] for no, sha in enumerate(input_sha256)],
        }
        done = _load_progress(out_dir, settings)
        todo = [(no, p) for no, p in enumerate(files) if rel[no] not in done]
        resumed = len(files) - len(todo)
        if resumed:
            log.info("shards: resuming; %d of %d input files already done", resumed, len(files))
        t1 = time.time()
        new_tokens = 0
        total_docs = sum(s.n for s in scans.values())
        with tqdm(total=total_docs, unit="doc", desc="shards", mininterval=5) as bar:
            bar.update(sum(f["documents"] for e in done.values() for s in SPLITS for f in e[s]))
            for no, entry in _encode_files(enc, todo, rel, out_dir, dtype, max_tokens_per_file, batch_size, cutoffs,
                                          {n: i for i, n in enumerate(names)}, bar):
                done[rel[no]] = entry
                write_json(out_dir / PROGRESS, {"settings": settings, "files": done})
                new_tokens += sum(f["tokens"] for s in SPLITS for f in entry[s])
                if on_file_done is not None:
                    on_file_done(rel[no])
        t2 = time.time()

    index = _index(out_dir, settings, done, rel, scans, validation_fraction, min_validation_docs, vocab_size)
    index["mixture"] = _mixture(out_dir, index, weights, seed)
    write_json(out_dir / INDEX, index)
    _clear(out_dir, set(output_files(out_dir)))  # e.g. a mixture of an earlier run without weights
    (out_dir / PROGRESS).unlink(missing_ok=True)
    return _metrics(index, workers, new_tokens, t1 - t0, t2 - t1, resumed)


def _special_tokens(tokenizer_dir: Path):
    try:
        specials = read_special_tokens(tokenizer_dir)
    except SpecialTokensError as e:
        raise ShardsWriteError(f"shards: {e}") from None
    if specials.eos is None:
        raise ShardsWriteError(f"shards: the tokenizer in {tokenizer_dir} has no eos token (tokenizer_config.json key "
                               f"'eos_token'); documents need one to end them")
    return specials


def _special_entry(specials) -> dict:
    """index.json's special ids (null when the tokenizer has none) and the document layout."""
    return {"bos_token_id": specials.bos_id, "eos_token_id": specials.eos_id, "pad_token_id": specials.pad_id,
            "document_layout": specials.layout(), "document_starts_with_bos": bool(specials.doc_prefix())}


def _index(out_dir: Path, settings: dict, done: dict, rel: dict[int, str], scans: dict[str, SplitScan],
           fraction: float, k: int, vocab_size: int) -> dict:
    splits = {}
    for s in SPLITS:
        entries = [f for no in sorted(rel) for f in done[rel[no]][s]]
        per_source = {n: {"tokens": 0, "documents": 0, "chars": 0} for n in settings["sources"]}
        for no in rel:
            for n, c in done[rel[no]]["sources"][s].items():
                for key in c:
                    per_source[n][key] += c[key]
        splits[s] = {"files": entries, "tokens": sum(f["tokens"] for f in entries),
                     "documents": sum(f["documents"] for f in entries), "sources": per_source}
    return {
        "format": FORMAT,
        "dtype": settings["dtype"],
        "vocab_size": vocab_size,
        **settings["special_tokens"],
        "tokenizer_sha256": settings["tokenizer_sha256"],
        "sources": settings["sources"],  # the source numbers of *.docs.npy
        "split_rule": {"hash": "sha256(id)[:8] big-endian", "per": "source", "validation_fraction": fraction,
                       "min_validation_docs": k,
                       "cutoffs": {n: {"cutoff": c, "documents": scans[n].n} for n, c in settings["cutoffs"].items()}},
        "splits": splits,
    }


def _mixture(out_dir: Path, index: dict, weights: dict[str, float] | None, seed: int) -> dict:
    """The mixture entry of index.json; writes train-mixture.npy unless every rate is 1 (plain concatenation)."""
    train = index["splits"]["train"]
    tokens = {n: c["tokens"] for n, c in train["sources"].items()}
    if weights is None:
        rates = {n: 1.0 for n, t in tokens.items() if t}
    else:
        bad = {n: w for n, w in weights.items() if not (float(w) >= 0)}
        if bad:
            raise MixtureError(f"data.sources[].weight: must be >= 0, got {bad}")
        try:
            rates = MX.rates(tokens, weights)
        except KeyError as e:
            raise MixtureError(f"source '{e.args[0]}' (key 'metadata.source' of the clean documents) has no weight "
                               f"(data.sources[].weight) among {sorted(weights)}") from None
        except ValueError as e:
            raise MixtureError(f"data.sources[].weight: {e}") from None
    total = train["tokens"]
    entry = {"seed": seed, "schedule": None, "documents": train["documents"], "tokens": total, "sources": {}}
    realised = {n: tokens[n] for n in rates}
    if any(r != 1.0 for r in rates.values()):
        lengths, meta = _train_documents(out_dir, train)
        counts = np.zeros(len(lengths), np.int64)
        number = {n: i for i, n in enumerate(index["sources"])}
        for n, r in rates.items():
            idx = np.flatnonzero(meta["source"] == number[n])
            counts[idx] = MX.copies(lengths[idx], meta["hash"][idx], r)
            realised[n] = int((counts[idx] * lengths[idx]).sum())
        sched = MX.schedule(lengths, meta["hash"], counts, seed)
        save_npy(out_dir / MIXTURE, sched)
        entry.update(schedule=MIXTURE, documents=sched.shape[1], tokens=int(sched[1, -1]) if sched.shape[1] else 0)
    out_total = max(sum(realised.values()), 1)
    w_total = sum(float(weights[n]) for n in rates) if weights is not None else 0.0
    for n, r in rates.items():
        target = float(weights[n]) / w_total if weights is not None else tokens[n] / max(total, 1)
        entry["sources"][n] = {
            "tokens": tokens[n], "documents": train["sources"][n]["documents"],
            "weight": None if weights is None else float(weights[n]), "target_share": round(target, 6),
            "rate": round(r, 6), "sampling": "up" if r > 1 else "down" if r < 1 else "none",
            "realised_tokens": realised[n], "realised_share": round(realised[n] / out_total, 6),
        }
    return entry


def _train_documents(out_dir: Path, train: dict) -> tuple[np.ndarray, np.ndarray]:
    """Lengths (int64) and META of every train document, in global order."""
    lengths, meta = [], []
    for f in train["files"]:
        ends = np.load(out_dir / f["index"])
        lengths.append(np.diff(ends, prepend=0))
        meta.append(np.load(out_dir / f["docs"]))
    if not lengths:
        return np.zeros(0, np.int64), np.zeros(0, E.META)
    return np.concatenate(lengths), np.concatenate(meta)


def _metrics(index: dict, workers: int, new_tokens: int, scan_s: float, encode_s: float, resumed: int) -> dict:
    splits, mix = index["splits"], index["mixture"]
    total = sum(s["tokens"] for s in splits.values())
    m = {"dtype": index["dtype"], "vocab_size": index["vocab_size"],
         "files": sum(len(s["files"]) for s in splits.values()), "tokens": total, "workers": workers,
         "scan_seconds": round(scan_s, 2), "encode_seconds": round(encode_s, 2), "resumed_input_files": resumed,
         "tokens_per_sec": round(new_tokens / max(scan_s + encode_s, 1e-9), 1),
         "mixture_schedule": mix["schedule"], "mixture_tokens": mix["tokens"], "mixture_documents": mix["documents"]}
    for s in SPLITS:
        m[f"{s}_documents"] = splits[s]["documents"]
        m[f"{s}_tokens"] = splits[s]["tokens"]
        # bos/eos excluded: the tokenizer's own compression on this split
        framing = 1 + int(index["document_starts_with_bos"])
        text_tokens = splits[s]["tokens"] - framing * splits[s]["documents"]
        chars = sum(c["chars"] for c in splits[s]["sources"].values())
        m[f"{s}_chars_per_token"] = round(chars / text_tokens, 4) if text_tokens else None
    m["sources"] = {n: {**mx,
                        "validation_tokens": splits["validation"]["sources"][n]["tokens"],
                        "validation_documents": splits["validation"]["sources"][n]["documents"]}
                    for n, mx in mix["sources"].items()}
    return m


def output_files(out_dir: Path) -> list[str]:
    """Every file the index lists, plus index.json: the stage's outputs."""
    index = json.loads((Path(out_dir) / INDEX).read_text(encoding="utf-8"))
    names = [INDEX]
    for s in index["splits"].values():
        for f in s["files"]:
            names += [f["path"], f["index"], f["docs"]]
    if index.get("mixture", {}).get("schedule"):
        names.append(index["mixture"]["schedule"])
    return names
