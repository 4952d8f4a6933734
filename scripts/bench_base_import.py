"""Benchmark: verify_base (the base stage's check of a foundation model folder) on a ~1B-parameter checkpoint.

    python scripts/bench_base_import.py [--layers 22] [--hidden 2048] [--intermediate 5632] [--vocab 32000]
        [--heads 32] [--kv-heads 4] [--shards 3] [--out DIR] [--keep]

Writes (in a temporary folder, or --out) a Llama folder as a hub checkpoint is laid out: config.json, a byte-level
tokenizer, and random bf16 weights (TinyLlama-1.1B's shape by default, ~2.2 GB) in --shards safetensors files with
model.safetensors.index.json. Each shard is written tensor by tensor in 16 MiB blocks of random bytes, so the
script never holds more than a block. Then, in a fresh process (its peak RSS reset first, so it is verify_base's
own), times verify_base and prints:

  check        the torch-free checks (config, tokenizer files, safetensors headers against the file sizes)
  model        transformers: config and tokenizer loaded, the model built on the meta device, shapes compared
  hash         sha256 of every file, streamed (MB/s); "plain" is data_prep.hashing.sha256_file over the same files
               in this process, the pipeline's own hashing, for comparison
  imports      torch and transformers, imported first and left out of the figures below
  peak RSS     of the verifying process (and after the imports alone), against the folder's size

The files were just written, so they are likely in the page cache: the hash figures are CPU-bound (sha256), as a
cold read from a fast disk would be; from a network mount the disk decides. In a chain the base stage takes the
hashes the pipeline made for its manifest, so the folder is read once (see docs/base.md).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCK = 16 << 20


def llama_tensors(a) -> list[tuple[str, list[int]]]:
    """LlamaForCausalLM's parameters (untied head), in transformers' names and order."""
    h, i, v, d = a.hidden, a.intermediate, a.vocab, a.hidden // a.heads
    out = [("model.embed_tokens.weight", [v, h])]
    for n in range(a.layers):
        p = f"model.layers.{n}."
        out += [(p + "self_attn.q_proj.weight", [h, h]), (p + "self_attn.k_proj.weight", [a.kv_heads * d, h]),
                (p + "self_attn.v_proj.weight", [a.kv_heads * d, h]), (p + "self_attn.o_proj.weight", [h, h]),
                (p + "mlp.gate_proj.weight", [i, h]), (p + "mlp.up_proj.weight", [i, h]),
                (p + "mlp.down_proj.weight", [h, i]), (p + "input_layernorm.weight", [h]),
                (p + "post_attention_layernorm.weight", [h])]
    return out + [("model.norm.weight", [h]), ("lm_head.weight", [v, h])]


def write_shard(path: Path, tensors: list[tuple[str, list[int]]], rng: np.random.Generator) -> int:
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors:
        size = int(np.prod(shape)) * 2  # bf16
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        left = offset
        while left:
            n = min(BLOCK, left)
            f.write(rng.bytes(n))
            left -= n
    return offset // 2


def write_folder(folder: Path, a) -> tuple[int, int]:
    """The checkpoint: (parameters, bytes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": a.hidden,
              "intermediate_size": a.intermediate, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
              "num_key_value_heads": a.kv_heads, "vocab_size": a.vocab, "max_position_embeddings": 2048,
              "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": False, "bos_token_id": 1,
              "eos_token_id": 2, "dtype": "bfloat16"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({ch: i + 3 for i, ch in enumerate(pre_tokenizers.ByteLevel.alphabet())})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
    (folder / "LICENSE").write_text("Apache License\nVersion 2.0, January 2004\n")
    tensors = llama_tensors(a)
    total = sum(int(np.prod(s)) for _, s in tensors)
    shards: list[list[tuple[str, list[int]]]] = [[] for _ in range(a.shards)]
    acc = 0
    for name, shape in tensors:  # contiguous runs of about total / shards elements
        shards[min(a.shards - 1, acc * a.shards // total)].append((name, shape))
        acc += int(np.prod(shape))
    rng, weight_map = np.random.default_rng(0), {}
    for k, part in enumerate(shards, 1):
        name = f"model-{k:05d}-of-{a.shards:05d}.safetensors"
        write_shard(folder / name, part, rng)
        weight_map.update({t: name for t, _ in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total * 2}, "weight_map": weight_map}, indent=2))
    return total, sum(p.stat().st_size for p in folder.iterdir())


def _verify(folder: str) -> None:
    """The child: verify_base with its own peak RSS."""
    open("/proc/self/clear_refs", "w").write("5")  # the high-water mark carried over from the parent

    def hwm() -> int:
        return int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")).split()[1])

    t = time.perf_counter()
    for module in ("torch", "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto",
                   "transformers.models.llama.modeling_llama"):  # what verify_base imports, timed and measured apart
        importlib.import_module(module)

    from kgov_train.foundation import verify_base

    imports, imports_kb = time.perf_counter() - t, hwm()
    t = time.perf_counter()
    report = verify_base(folder, name="bench-1b", license="apache-2.0", progress=False)
    print(json.dumps({"wall": time.perf_counter() - t, "imports": imports, "imports_rss_kb": imports_kb,
                      "timings": report.timings, "parameters": report.parameters, "bytes": report.total_bytes,
                      "warnings": report.warnings, "peak_rss_kb": hwm()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--intermediate", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="folder to write (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="leave the folder (default: deleted at the end)")
    ap.add_argument("--_verify", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._verify:
        return _verify(a._verify)
    folder = a.out or Path(tempfile.mkdtemp(prefix="bench_base_")) / "llama-1b"
    try:
        t = time.perf_counter()
        params, size = write_folder(folder, a)
        print(f"wrote {folder}: {params / 1e9:.3f}B parameters, {size / 1e9:.2f} GB in {a.shards} shards "
              f"({time.perf_counter() - t:.1f}s)")
        from data_prep.hashing import sha256_file

        t = time.perf_counter()
        for p in sorted(folder.iterdir()):
            sha256_file(p)
        plain = time.perf_counter() - t
        out = subprocess.run([sys.executable, __file__, "--_verify", str(folder)], capture_output=True, text=True,
                             cwd=ROOT)
        if out.returncode:
            sys.exit(out.stderr)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        tm, mb = r["timings"], r["bytes"] / 1e6
        print(f"imports          {r['imports']:.2f}s  (transformers, torch; not counted below)")
        print(f"verify_base      {r['wall']:.2f}s  ({mb / r['wall']:.0f} MB/s of folder), "
              f"{r['parameters'] / 1e9:.3f}B parameters")
        print(f"  check          {tm['check_seconds']:.3f}s  (torch-free: config, tokenizer files, headers)")
        print(f"  model          {tm['model_check_seconds']:.2f}s  (transformers: config, tokenizer, meta model, "
              "shapes)")
        print(f"  hash           {tm['hash_seconds']:.2f}s  ({mb / tm['hash_seconds']:.0f} MB/s)")
        print(f"plain sha256     {plain:.2f}s  ({mb / plain:.0f} MB/s, data_prep.hashing.sha256_file)")
        print(f"peak RSS         {r['peak_rss_kb'] / 1024:.0f} MiB of the verifying process, "
              f"{r['imports_rss_kb'] / 1024:.0f} MiB of it after the imports; the folder is {size / 2**30:.2f} GiB")
        for w in r["warnings"]:
            print(f"warning: {w}")
    finally:
        if not a.keep:
            shutil.rmtree(folder if a.out else folder.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
