"""Benchmark: `kgov-train assets pack` and `assets verify` (kgov_train.carry) on a model-sized folder.

    python scripts/bench_assets.py [--gb 2.0] [--files 3] [--out DIR] [--keep]

Writes (in a temporary folder, or --out) a source folder laid out like a hub model download: config.json, a small
tokenizer.json and --files weight shards of random bytes, --gb GiB in all, each written in 16 MiB blocks. Then, each
in a fresh process (so the peak RSS is its own), packs it into a bundle and verifies the bundle, and prints per step
the wall time, MB/s over the folder's bytes and the peak RSS, against the folder's size: the files are streamed
(1 MiB at a time), so memory does not grow with them. Last, it flips one byte in the middle of the largest shard and
verifies again, which must fail naming that file (exit status 1).

The files were just written, so they are likely in the page cache: the figures are CPU-bound (sha256, plus the copy
for pack), as a cold read from a fast disk would be; from a USB medium or a network mount the medium decides.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 16 << 20

STEP = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from kgov_train import carry
t = time.perf_counter()
if {what!r} == "pack":
    carry.pack([carry.Spec({src!r}, repo_id="bench/model")], {bundle!r}, progress=False)
    problems = 0
else:
    _, found = carry.verify({bundle!r}, progress=False)
    problems = sum(len(p) for p in found.values())
    print(json.dumps({{"lines": [str(x) for p in found.values() for x in p]}}))
print(json.dumps({{"seconds": time.perf_counter() - t, "problems": problems,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def write_folder(dest: Path, gib: float, files: int) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (dest / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}}}))
    per_file = int(gib * (1 << 30)) // files
    for i in range(files):
        with open(dest / f"model-{i + 1:05d}-of-{files:05d}.safetensors", "wb") as f:
            left = per_file
            while left > 0:
                n = min(BLOCK, left)
                f.write(os.urandom(n))
                left -= n
    return sum(p.stat().st_size for p in dest.iterdir())


def step(what: str, src: Path, bundle: Path) -> dict:
    code = STEP.format(root=str(ROOT), what=what, src=str(src), bundle=str(bundle))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{what} failed:\n{res.stderr[-2000:]}")
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    return {k: v for d in lines for k, v in d.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=2.0, help="GiB of weights in the source folder")
    ap.add_argument("--files", type=int, default=3, help="weight shards")
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args()
    work = a.out or Path(tempfile.mkdtemp(prefix="bench_assets_"))
    try:
        src, bundle = work / "Llama-bench", work / "bundle"
        shutil.rmtree(bundle, ignore_errors=True)
        t = time.perf_counter()
        size = write_folder(src, a.gb, a.files)
        print(f"source folder: {size / 1e6:,.0f} MB in {a.files + 2} files (written in {time.perf_counter() - t:.1f} s)")
        for what in ("pack", "verify"):
            r = step(what, src, bundle)
            print(f"{what:7s} {r['seconds']:7.1f} s  {size / 1e6 / r['seconds']:7.0f} MB/s  "
                  f"peak RSS {r['peak_rss_mb']:6.0f} MB  problems {r['problems']}")
        entry = next(p for p in bundle.iterdir() if p.is_dir())  # named after the repo (bench/model -> model)
        victim = max(entry.iterdir(), key=lambda p: p.stat().st_size)
        with open(victim, "r+b") as f:
            f.seek(victim.stat().st_size // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 1]))
        r = step("verify", src, bundle)
        named = [x for x in r.get("lines", []) if victim.name in x]
        print(f"flipped byte in {victim.name}: verify found {r['problems']} problem(s)"
              + (f": {named[0][:140]}" if named else " (NOT NAMED)"))
    finally:
        if not a.keep and a.out is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
