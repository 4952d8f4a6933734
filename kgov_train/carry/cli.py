"""`kgov-train assets pack|verify`: carry models, tokenizers and datasets across the air gap, with proof.

    kgov-train assets pack SRC... --out BUNDLE [--name N] [--kind K] [--repo-id ID] [--no-progress]
    kgov-train assets verify BUNDLE [--expect SHA256] [--json] [--no-progress]

--name, --kind and --repo-id are given once (for every SRC) or once per SRC, in order. Exit status: 0 when the
bundle is whole, 1 when a file changed, is missing or is extra (or --expect differs), 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

from kgov_train.carry.bundle import BundleError, verify
from kgov_train.carry.card import KINDS
from kgov_train.carry.pack import Spec, pack

PROG = "kgov-train assets"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="pack|verify")
    p = sub.add_parser("pack", help="copy downloaded folders into a new bundle with assets.json")
    p.add_argument("src", nargs="+", metavar="SRC", help="a folder as downloaded from the hub (snapshot_download "
                   "local_dir, a hub cache snapshot) or any folder")
    p.add_argument("--out", required=True, metavar="BUNDLE", help="the bundle folder to create (new or empty)")
    p.add_argument("--name", action="append", help="the entry's folder name (default: the repo's or folder's name)")
    p.add_argument("--kind", action="append", choices=KINDS, help="override the detected kind")
    p.add_argument("--repo-id", action="append", help="the hub repo id (owner/name), which snapshot_download's "
                   "local_dir metadata does not record")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    v = sub.add_parser("verify", help="re-hash every file of a bundle against its assets.json")
    v.add_argument("bundle", metavar="BUNDLE")
    v.add_argument("--expect", metavar="SHA256", help="the bundle hash written down on the connected side (the "
                   "full hash or its first 12+ hex digits)")
    v.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def _per_src(values: list[str] | None, n: int, flag: str) -> list[str | None]:
    if not values:
        return [None] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise BundleError(f"{flag}: given {len(values)} times for {n} SRC folders; give it once, or once per SRC")
    return list(values)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):,.1f} MiB"


def _pack(a: argparse.Namespace) -> int:
    n = len(a.src)
    names, kinds, ids = (_per_src(a.name, n, "--name"), _per_src(a.kind, n, "--kind"),
                         _per_src(a.repo_id, n, "--repo-id"))
    specs = [Spec(s, names[i], kinds[i], ids[i]) for i, s in enumerate(a.src)]
    bundle = pack(specs, a.out, progress=not a.no_progress)
    files = sum(len(e.files) for e in bundle.entries)
    size = sum(int(f["bytes"]) for e in bundle.entries for f in e.files)
    print(f"packed {len(bundle.entries)} entr{'y' if len(bundle.entries) == 1 else 'ies'}, {files} files, "
          f"{_mib(size)} into {bundle.folder}")
    for e in bundle.entries:
        s = e.source
        where = f"{s.get('id') or 'source id unknown'} @ {s.get('revision') or 'revision unknown'}"
        print(f"  {e.name}: {e.kind}, {len(e.files)} files, {where} ({s.get('layout')}), licence {e.license}")
        for w in e.warnings:
            print(f"    note: {w}")
    print(f"bundle hash (sha256 of assets.json): {bundle.sha256}")
    print(f"write it down; on the closed side: {PROG} verify <bundle> --expect {bundle.sha256}")
    return 0


def _verify(a: argparse.Namespace) -> int:
    bundle, problems = verify(a.bundle, progress=not a.no_progress)
    expect = (a.expect or "").strip().lower()
    if expect and len(expect) < 12:
        raise BundleError(f"--expect {a.expect}: give at least the first 12 hex digits of the bundle hash")
    hash_ok = not expect or bundle.sha256.startswith(expect)
    bad = sum(len(p) for p in problems.values())
    if a.json:
        print(json.dumps({"bundle": str(bundle.folder), "bundle_sha256": bundle.sha256, "expected": expect or None,
                          "ok": bad == 0 and hash_ok,
                          "entries": {e.name: {"files": len(e.files), "problems": [
                              {"what": p.what, "path": str(p.path), "expected": None if p.what in ("missing", "extra")
                               else p.expected, "found": p.found} for p in problems.get(e.name, [])]}
                              for e in bundle.entries},
                          "stray": [str(p.path) for p in problems.get("", [])]}, indent=1))
        return 0 if bad == 0 and hash_ok else 1
    n = len(bundle.entries)
    print(f"bundle {bundle.folder}: {n} entr{'y' if n == 1 else 'ies'}, created {bundle.data.get('created_at')}")
    print(f"bundle hash (sha256 of assets.json): {bundle.sha256}")
    if expect:
        print("bundle hash matches the one expected" if hash_ok else
              f"BUNDLE HASH DIFFERS: expected {expect}, found {bundle.sha256} (assets.json is not the one packed)")
    counts = {"changed": 0, "missing": 0, "extra": 0}
    for e in bundle.entries:
        mine = problems.get(e.name, [])
        if not mine:
            print(f"OK       {e.name} ({e.kind}, {len(e.files)} files)")
    for name, mine in problems.items():
        for p in mine:
            what = "changed" if p.what in ("changed", "size") else p.what
            counts[what] += 1
            rel = p.path.relative_to(bundle.folder) if bundle.folder in p.path.parents else p.path
            if p.what == "changed":
                print(f"CHANGED  {rel}: sha256 expected {p.expected}, found {p.found}")
            elif p.what == "size":
                print(f"CHANGED  {rel}: {p.found} bytes, {p.expected} expected")
            else:
                print(f"{what.upper():<8} {rel}")
    if bad == 0 and hash_ok:
        print("verify: OK, every file as packed")
        return 0
    parts = [f"{v} {k}" for k, v in counts.items() if v] + ([] if hash_ok else ["bundle hash differs"])
    print(f"verify: FAILED ({', '.join(parts)})")
    return 1


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        return _pack(a) if a.cmd == "pack" else _verify(a)
    except BundleError as e:
        print(f"{PROG} {a.cmd}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a disk full, a file unreadable: one line, naming it
        print(f"{PROG} {a.cmd}: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
