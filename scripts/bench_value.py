"""Benchmark: what the Korean chain is worth, at equal compute, in bits per byte on held-out Korean documents.

    python scripts/bench_value.py --corpus PATH [--corpus PATH ...] [--english PATH ...]
        [--variants full,raw_en,no_dedup,no_quality,no_length,en_tok] [--flops 5e11] [--model tiny|small|SPEC]
        [--vocab-size 4000] [--heldout-fraction 0.05] [--min-heldout 1] [--heldout-similarity 0.5]
        [--columns Q,A] [--text-key text] [--nproc 1] [--threads 1] [--seed 0] [--extra K=V ...]
        [--out /tmp/bench_value]

Prints its figures; it is not a test. Every variant is a plain `kgov-train recipe=smoke` run of the stages data,
tokenizer, shards, pretrain and eval (no SFT/DPO: `eval.model_stage=pretrain eval.stages=[pretrain] eval.tasks=[]`)
in --out/runs/<variant>, with the same model shape, seed, micro batch, seq_len and `pretrain.flops` budget (tokens
D = flops / (6 N_non-embedding), N the same for every variant since it does not depend on the vocabulary). The runs
share a stage cache (`cache_dir=--out/stage-cache`): a stage whose config and inputs equal another variant's (en_tok's
data stage and full's; every stage after data when a data stage writes the same bytes) is filled from the cache.
Not `kgov-train -m`: the English-tokenizer variants need a step between two chain calls (below).

Input
  --corpus PATH    real Korean text, repeatable, globs allowed (quote them): `.txt` (one document per file, as the
                   data stage reads it), `.csv`/`.tsv` (one document per row: the --columns joined by a newline,
                   default Q,A, i.e. ChatbotData's question and answer), `.jsonl` (--text-key, default text). Every
                   --corpus argument is one group for the held-out split below.
  --english PATH   English text for the English-centric tokenizer, repeatable, globs allowed, read like --corpus
                   (`.txt`/`.md`: one document per file); written to --out/english/english.jsonl (the data stage
                   reads no .md). Default: this repository's README.md and docs/*.md plus Python's own
                   `pydoc_data.topics`, one document per topic (0.65 MB). The repo's docs quote some Korean, but
                   with character_coverage 0.9995 the tokenizer keeps one Hangul piece (호): Korean text goes to
                   byte fallback, ~1 token per UTF-8 byte.

The held-out split (before any variant's data stage)
  Documents are held out by content, not by position: a document is held out iff sha256 of its text (whitespace
  collapsed) falls below --heldout-fraction (0.05) of the hash range; exact copies therefore fall on the same side.
  Each group holds out at least --min-heldout (1) document when it has 5 or more (its lowest hashes), so the 11 files
  of a law/bill sample are represented too. A document whose character 5-gram Jaccard similarity (whitespace
  removed) with a held-out document of its group is at least --heldout-similarity (0.5; above 1: off) is dropped
  from training (--out/corpus/dropped_near_heldout.jsonl): amended bills share most of their text, and a variant
  without dedup must not see the test document's twin. The held-out documents go to
  --out/corpus/heldout_<group>.jsonl (given to every variant as `eval.text_files`, scored in bits per byte: cleaning
  choices cannot change the test set); the rest to --out/corpus/train.jsonl (`{"id", "text"}` per line), every
  variant's only data input (`data.inputs`).

Variants (--variants, comma-separated, in this order)
  full        the Korean chain: normalise, PII pseudonymisation, quality filters, exact + near dedup
              (`data.min_chars=20`, the schema's default, not the smoke recipe's 200), a tokenizer trained on the
              cleaned corpus (sentencepiece BPE, --vocab-size)
  raw_en      the same corpus uncleaned through the English-centric tokenizer: data.normalize.enabled=false,
              data.pii.enabled=false, data.quality.enabled=false, data.dedup.exact=false, data.dedup.near=false,
              data.min_chars=1 (data.decontam is off by default). Not switchable by a key: Unicode NFC (always
              applied), UTF-8 decoding, and the rejection of empty texts and malformed lines.
  no_dedup    full with data.dedup.exact=false data.dedup.near=false
  no_quality  full with data.quality.enabled=false (the Polyglot-ko/Gopher rules; not the length limits)
  no_length   full with data.min_chars=1 (the length limit that short chat rows meet, reported as too_short)
  en_tok      full's cleaned data (same data stage) through the English-centric tokenizer
  The target compares full against raw_en: full >= 10% fewer bits per byte on the held-out Korean documents.

The English-centric tokenizer
  A run of its own (--out/runs/_en_tokenizer, stages data and tokenizer) trains it with the tokenizer stage itself
  on --english (data stage with PII and quality off: the Korean quality rules would reject English), with the very
  settings of the Korean variants (`tokenizer.*` identical, vocab size included). The stage's modes cannot take a
  finished tokenizer on route=scratch (`tokenizer.mode=base` needs route=cpt; `extend` must add at least one
  piece), so the variants that use it run `stages=[data]`, then get a copy of that sealed tokenizer stage folder
  (manifest included: it records honestly that it was trained on the English files) as their `tokenizer/`, then
  run `stages=[shards,pretrain,eval]`: the shards stage checks the folder's seal (every output's sha256) as it
  checks any tokenizer's.

Options
  --flops F        pretrain.flops for every variant (5e11: 901k tokens on the tiny model, N = 92,480)
  --model M        a recipes/model/<name>.yaml name (tiny, the default: 0.61M parameters with a 4k vocabulary),
                   small (tiny widened to hidden 128, intermediate 352, 4 layers: N = 738,432, 1.77M parameters;
                   ~8x tiny's step time on CPU) or comma-separated model.* keys on top of tiny,
                   e.g. hidden_size=256,num_hidden_layers=4
  --vocab-size V   tokenizer.vocab_size of both tokenizers (4000)
  --nproc N        nproc_per_node (1; the same for every variant, so is the global batch: seq_len 128 x 4 x N)
  --threads T      OMP_NUM_THREADS of every stage (1; 0: the launcher's default, cores // nproc). On a shared
                   machine one thread per process was >10x faster than two fighting a test run for the cores
                   (spinning OpenMP barriers); the figures compared are FLOPs and bits, not seconds
  --seed S         the recipes' seed (0)
  --extra K=V      more Hydra overrides for every variant (repeatable), e.g. pretrain.learning_rate=1e-3
  --out DIR        work folder (/tmp/bench_value); runs are make-like: a rerun skips complete stages
  --timeout S      per kgov-train call (1800)

Output: a table of variant, tokens trained, FLOPs (the budget, and 6 N D for the tokens actually trained),
documents kept by the data stage, held-out tokens per byte (how finely each tokenizer cuts the test set), bits per
byte per held-out group and overall (sum of bits / sum of bytes), change against raw_en, the pretrain stage's
training seconds (of the run that computed it, when filled from the stage cache); then the target line, and
--out/results.json with every figure. Scored by the eval stage's bits per byte
(kgov_train/evaluation/bits_per_byte.py): each document on its own, the model's own tokenizer, windows of
pretrain.seq_len. Caveat: on a small corpus equal compute means more epochs for the tokenizer that compresses
more (docs/benchmarks.md has figures at two budgets); check the pretrain manifests' validation_loss.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KGOV = [sys.executable, "-m", "kgov_train.cli"]
THREADS = 0  # --threads
ALL_VARIANTS = ("full", "raw_en", "no_dedup", "no_quality", "no_length", "en_tok")
DATA_OFF = ["data.normalize.enabled=false", "data.pii.enabled=false", "data.quality.enabled=false",
            "data.dedup.exact=false", "data.dedup.near=false", "data.min_chars=1"]
VARIANTS = {  # name: (data overrides, tokenizer: "trained" | "english")
    "full": ([], "trained"),
    "raw_en": (DATA_OFF, "english"),
    "no_dedup": (["data.dedup.exact=false", "data.dedup.near=false"], "trained"),
    "no_quality": (["data.quality.enabled=false"], "trained"),
    "no_length": (["data.min_chars=1"], "trained"),
    "en_tok": ([], "english"),
}
DESCRIPTION = {
    "full": "(a) full chain, Korean tokenizer",
    "raw_en": "(b) uncleaned, English tokenizer",
    "no_dedup": "full, dedup off",
    "no_quality": "full, quality filters off",
    "no_length": "full, min_chars 20 -> 1",
    "en_tok": "full data, English tokenizer",
}


def expand(patterns: list[str]) -> list[Path]:
    out = []
    for p in patterns:
        hits = sorted(glob.glob(os.path.expanduser(p)))
        if not hits:
            raise SystemExit(f"--corpus/--english {p}: no such file")
        out += [Path(h) for h in hits]
    return out


def read_documents(path: Path, columns: list[str], text_key: str) -> list[str]:
    name = path.name.lower()
    if name.endswith((".csv", ".tsv")):
        with open(path, encoding="utf-8", newline="") as f:
            rows = csv.DictReader(f, delimiter="\t" if name.endswith(".tsv") else ",")
            return ["\n".join((row.get(c) or "").strip() for c in columns if (row.get(c) or "").strip())
                    for row in rows]
    if name.endswith(".jsonl"):
        docs = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    docs.append(str(json.loads(line).get(text_key, "")))
        return docs
    return [path.read_text(encoding="utf-8")]


def content_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(" ".join(text.split()).encode("utf-8")).digest()[:8], "big")


def shingles(text: str, n: int = 5) -> set[str]:
    t = "".join(text.split())
    return {t[i:i + n] for i in range(max(1, len(t) - n + 1))}


def near_heldout(docs: list[tuple[str, str]], held: set[str], threshold: float) -> set[str]:
    """Texts not held out whose character 5-gram Jaccard similarity (whitespace removed) with a held-out text is at
    least threshold: near-duplicates of the test set, kept out of training (amended bills share most of their text)."""
    if threshold > 1:
        return set()
    index: dict[str, list[int]] = {}
    held_sh = [shingles(t) for t in held]
    for k, sh in enumerate(held_sh):
        for g in sh:
            index.setdefault(g, []).append(k)
    near = set()
    for _, t in docs:
        if t in held or t in near:
            continue
        sh = shingles(t)
        common: dict[int, int] = {}
        for g in sh:
            for k in index.get(g, ()):
                common[k] = common.get(k, 0) + 1
        if any(c / (len(sh) + len(held_sh[k]) - c) >= threshold for k, c in common.items()):
            near.add(t)
    return near


def split_corpus(args, out: Path) -> dict:
    """train.jsonl and heldout_<group>.jsonl under out/corpus; held out by content hash (module docstring)."""
    cdir = out / "corpus"
    cdir.mkdir(parents=True, exist_ok=True)
    cutoff = int(args.heldout_fraction * 2 ** 64)
    train, dropped, groups, stems = [], [], {}, set()
    for pattern in args.corpus:
        files = expand([pattern])
        docs = []
        for f in files:
            docs += [(f"{f.name}:{i + 1}", t) for i, t in enumerate(read_documents(f, args.columns, args.text_key))]
        docs = [(i, t) for i, t in docs if t.strip()]
        hashes = {t: content_hash(t) for _, t in docs}
        held = {t for t, h in hashes.items() if h < cutoff}
        if len(docs) >= 5 and len(held) < args.min_heldout:
            held |= set(sorted(hashes, key=hashes.get)[:args.min_heldout])
        stem = files[0].stem if len(files) == 1 else files[0].parent.name
        while stem in stems:
            stem += "_"
        stems.add(stem)
        near = near_heldout(docs, held, args.heldout_similarity)
        dropped += [(i, t) for i, t in docs if t in near]
        heldout = [(i, t) for i, t in docs if t in held]
        groups[stem] = {"pattern": pattern, "files": len(files), "documents": len(docs), "heldout": len(heldout),
                        "dropped_near_heldout": sum(t in near for _, t in docs),
                        "heldout_bytes": sum(len(t.encode("utf-8")) for _, t in heldout),
                        "train_bytes": sum(len(t.encode("utf-8")) for _, t in docs if t not in held and t not in near),
                        "path": str(cdir / f"heldout_{stem}.jsonl")}
        with open(groups[stem]["path"], "w", encoding="utf-8") as f:
            for i, t in heldout:
                f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
        train += [(f"{stem}/{i}", t) for i, t in docs if t not in held and t not in near]
    for name, docs in (("train.jsonl", train), ("dropped_near_heldout.jsonl", dropped)):
        with open(cdir / name, "w", encoding="utf-8") as f:
            for i, t in docs:
                f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
    return groups


def english_files(args, out: Path) -> list[Path]:
    """The English text as one jsonl (a document per file; per topic for pydoc_data): the data stage reads no .md."""
    edir = out / "english"
    edir.mkdir(parents=True, exist_ok=True)
    docs: list[tuple[str, str]] = []
    if args.english:
        for f in expand(args.english):
            docs += [(f"{f.name}:{i + 1}", t) for i, t in enumerate(read_documents(f, args.columns, args.text_key))]
    else:
        import pydoc_data.topics as topics

        md = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        docs += [(f.name, f.read_text(encoding="utf-8")) for f in md]
        docs += [(f"pydoc_data.topics:{k}", topics.topics[k]) for k in sorted(topics.topics)]
    path = edir / "english.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i, t in docs:
            if t.strip():
                f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
    return [path]


MODEL_ALIASES = {"small": "hidden_size=128,intermediate_size=352,num_hidden_layers=4"}  # N = 738,432


def model_overrides(spec: str) -> list[str]:
    spec = MODEL_ALIASES.get(spec, spec)
    if "=" not in spec:
        return [f"model={spec}"]
    return ["model=tiny"] + [f"model.{kv.strip()}" for kv in spec.split(",") if kv.strip()]


def kgov(overrides: list[str], log: Path, timeout: float) -> float:
    t0 = time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if THREADS:
        env["OMP_NUM_THREADS"] = str(THREADS)
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ kgov-train {' '.join(overrides)}\n")
        f.flush()
        rc = subprocess.run(KGOV + overrides, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env,
                            timeout=timeout).returncode
    if rc != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
        raise SystemExit(f"kgov-train failed (rc {rc}), log {log}:\n" + "\n".join(tail))
    return time.time() - t0


def manifest(run: Path, stage: str) -> dict:
    return json.loads((run / stage / "manifest.json").read_text(encoding="utf-8"))


def common_overrides(args, out: Path, groups: dict) -> list[str]:
    text_files = ",".join(g["path"] for g in groups.values())
    return [
        "recipe=smoke", f"cache_dir={out / 'stage-cache'}", f"seed={args.seed}", f"nproc_per_node={args.nproc}",
        f"data.inputs=[{out / 'corpus' / 'train.jsonl'}]", "data.source=ko-corpus",
        "data.license=see-bench_value-corpus", "data.text_key=text", "data.id_key=id", "data.min_chars=20",
        f"tokenizer.vocab_size={args.vocab_size}", "tokenizer.input_sentence_size=0",
        "shards.validation_fraction=0.02",
        f"pretrain.flops={args.flops}", "pretrain.save_steps=1000000",
        "pretrain.logging_steps=10", "pretrain.eval_sequences=16",
        "eval.model_stage=pretrain", "eval.stages=[pretrain]", "eval.tasks=[]", "eval.max_new_tokens=8",
        f"eval.text_files=[{text_files}]",
        *model_overrides(args.model), *args.extra,
    ]


def build_english_tokenizer(args, out: Path, common: list[str]) -> Path:
    run = out / "runs" / "_en_tokenizer"
    files = english_files(args, out)
    ov = [o for o in common if not o.startswith(("data.inputs=", "data.source=", "data.license="))]
    ov += [f"run_dir={run}", f"data.inputs=[{files[0]}]", "data.source=english",
           "data.license=see-bench_value", "data.pii.enabled=false", "data.quality.enabled=false",
           "stages=[data,tokenizer]"]
    run.mkdir(parents=True, exist_ok=True)
    secs = kgov(ov, run.parent / "_en_tokenizer.log", args.timeout)
    m = manifest(run, "tokenizer")
    print(f"English-centric tokenizer: {manifest(run, 'data')['metrics'].get('docs_kept')} documents "
          f"({files[0].stat().st_size:,} bytes of jsonl), "
          f"vocab {m['metrics'].get('vocab_size')}, {secs:.0f} s -> {run / 'tokenizer'}", flush=True)
    return run / "tokenizer"


def run_variant(name: str, args, out: Path, common: list[str], en_tok: Path | None) -> dict:
    data_ov, tok = VARIANTS[name]
    run = out / "runs" / name
    run.mkdir(parents=True, exist_ok=True)
    log = out / "runs" / f"{name}.log"
    ov = common + data_ov + [f"run_dir={run}"]
    t0 = time.time()
    if tok == "trained":
        kgov(ov + ["stages=[data,tokenizer,shards,pretrain,eval]"], log, args.timeout)
    else:
        kgov(ov + ["stages=[data]"], log, args.timeout)
        placed = run / "tokenizer" / "manifest.json"
        if not placed.is_file() or placed.read_bytes() != (en_tok / "manifest.json").read_bytes():
            shutil.rmtree(run / "tokenizer", ignore_errors=True)
            shutil.copytree(en_tok, run / "tokenizer")
        kgov(ov + ["stages=[shards,pretrain,eval]"], log, args.timeout)
    wall = time.time() - t0
    data, pre, ev = manifest(run, "data"), manifest(run, "pretrain"), manifest(run, "eval")
    report = json.loads((run / "eval" / "report.json").read_text(encoding="utf-8"))
    bpb = report["bits_per_byte"]["pretrain"]
    pm = pre["metrics"]
    tokens = int(pm.get("tokens") or pm.get("tokens_seen") or 0)
    n = int(pm.get("non_embedding_parameters") or 0)
    return {"variant": name, "wall": wall, "bpb": bpb, "tokens": tokens, "budget_tokens": pm.get("budget_tokens"),
            "flops_budget": pm.get("flops_budget"), "n": n, "flops_trained": 6 * n * tokens,
            "docs_in": data["metrics"].get("docs_in"), "docs_kept": data["metrics"].get("docs_kept"),
            "rejected": data["metrics"].get("rejected_by_reason"), "validation_loss": pm.get("validation_loss"),
            "reused": {s: bool(manifest(run, s).get("reused_from")) for s in ("data", "tokenizer", "shards")},
            "eval_seconds": ev.get("wall_seconds"), "train_seconds": pm.get("train_runtime")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", action="append", required=True)
    ap.add_argument("--english", action="append", default=[])
    ap.add_argument("--variants", default=",".join(ALL_VARIANTS))
    ap.add_argument("--flops", type=float, default=5e11)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--vocab-size", type=int, default=4000)
    ap.add_argument("--heldout-fraction", type=float, default=0.05)
    ap.add_argument("--min-heldout", type=int, default=1)
    ap.add_argument("--heldout-similarity", type=float, default=0.5)
    ap.add_argument("--columns", default="Q,A", type=lambda s: [c.strip() for c in s.split(",") if c.strip()])
    ap.add_argument("--text-key", default="text")
    ap.add_argument("--nproc", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", action="append", default=[])
    ap.add_argument("--out", default="/tmp/bench_value")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        raise SystemExit(f"--variants: unknown {bad}; known {list(VARIANTS)}")
    out = Path(args.out).resolve()
    t_start = time.time()
    groups = split_corpus(args, out)
    print(f"held-out split ({args.heldout_fraction:.0%} by content hash, at least {args.min_heldout} per group):")
    for stem, g in groups.items():
        print(f"  {stem:24s} {g['files']:4d} files {g['documents']:7,d} docs: {g['heldout']:5,d} held out "
              f"({g['heldout_bytes']:,} bytes), {g['dropped_near_heldout']} near-duplicates of them dropped, "
              f"train {g['train_bytes']:,} bytes  [{g['pattern']}]")
    common = common_overrides(args, out, groups)
    en_tok = build_english_tokenizer(args, out, common) if any(VARIANTS[v][1] == "english" for v in names) else None

    rows = []
    for name in names:
        print(f"running {name}: {DESCRIPTION[name]} ...", flush=True)
        r = run_variant(name, args, out, common, en_tok)
        rows.append(r)
        print(f"  done in {r['wall']:.0f} s; kept {r['docs_kept']}/{r['docs_in']} docs, {r['tokens']:,} tokens; "
              f"reused {[s for s, v in r['reused'].items() if v] or 'none'}", flush=True)

    for r in rows:
        sets = {k: v for k, v in r["bpb"].items() if not k.startswith("heldout:")}
        bits = sum(v["bits"] for v in sets.values())
        nbytes = sum(v["bytes"] for v in sets.values())
        r["overall"] = bits / nbytes
        r["tokens_per_byte"] = sum(v["tokens"] for v in sets.values()) / nbytes
        r["sets"] = {k: v["bits_per_byte"] for k, v in sets.items()}
    ref = next((r for r in rows if r["variant"] == "raw_en"), None)
    stems = list(groups)
    print()
    print(f"equal compute: pretrain.flops={args.flops:.3g}, model {args.model} "
          f"(N non-embedding = {rows[0]['n']:,}), vocab {args.vocab_size}, seed {args.seed}, nproc {args.nproc}")
    head = (f"{'variant':11s} {'what':34s} {'docs kept':>13s} {'tokens':>9s} {'FLOPs 6ND':>10s} {'tok/byte':>8s} "
            + " ".join(f"{s[:14]:>14s}" for s in stems) + f" {'bpb all':>8s} {'vs raw_en':>9s} {'train s':>7s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        change = f"{(r['overall'] / ref['overall'] - 1) * 100:+.1f}%" if ref else "n/a"
        kept = f"{r['docs_kept']}/{r['docs_in']}"
        print(f"{r['variant']:11s} {DESCRIPTION[r['variant']]:34s} {kept:>13s} "
              f"{r['tokens']:>9,d} {r['flops_trained']:>10.3g} {r['tokens_per_byte']:>8.3f} "
              + " ".join(f"{r['sets'].get(f'heldout_{s}', float('nan')):>14.4f}" for s in stems)
              + f" {r['overall']:>8.4f} {change:>9s} {r['train_seconds'] or 0:>7.0f}")
    full = next((r for r in rows if r["variant"] == "full"), None)
    if full and ref:
        gain = (1 - full["overall"] / ref["overall"]) * 100
        print(f"\ntarget: (a) full chain >= 10% lower bits per byte than (b) raw_en on the held-out Korean documents: "
              f"{gain:.1f}% lower ({full['overall']:.4f} vs {ref['overall']:.4f}) -> "
              f"{'MET' if gain >= 10 else 'NOT MET'}")
    else:
        print("\ntarget: needs the variants full and raw_en")
    (out / "results.json").write_text(json.dumps({"args": vars(args), "groups": groups, "rows": rows}, indent=1,
                                                  ensure_ascii=False, default=str), encoding="utf-8")
    print(f"total {time.time() - t_start:.0f} s; results in {out / 'results.json'}, runs in {out / 'runs'}")


if __name__ == "__main__":
    main()
