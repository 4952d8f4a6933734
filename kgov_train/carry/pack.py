"""pack: copy downloaded folders into a new bundle, hashing every byte as it is copied, and write assets.json last
(a bundle without assets.json is an unfinished pack)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kgov_train.carry.bundle import ASSETS, FORMAT, Bundle, BundleError, load
from kgov_train.carry.card import KINDS, detect_kind, licence
from kgov_train.carry.hashing import bar, copy_and_hash
from kgov_train.carry.layout import LayoutError, Source, etag_matches, find_source

_NAME = re.compile(r"^[A-Za-z0-9][\w.+-]*$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Spec:
    """One folder to pack, with what the user said of it (each None: read from the folder)."""

    path: str | Path
    name: str | None = None
    kind: str | None = None
    repo_id: str | None = None


@dataclass
class _Plan:
    spec: Spec
    source: Source
    name: str
    kind: str
    license: str
    license_from: str | None


def default_name(src: Source) -> str:
    """The repo's name (owner/name -> name), else the folder's name."""
    if src.repo_id:
        return src.repo_id.rsplit("/", 1)[-1]
    return src.folder.name


def _plan(specs: list[Spec], out: Path) -> list[_Plan]:
    problems: list[str] = []
    if out.exists() and not out.is_dir():
        problems.append(f"--out {out}: a file; give a new (or empty) folder for the bundle")
    elif out.is_dir() and any(out.iterdir()):
        problems.append(f"--out {out}: not empty; give a new (or empty) folder for the bundle")
    plans: list[_Plan] = []
    names: dict[str, Path] = {}
    for spec in specs:
        try:
            src = find_source(spec.path, spec.repo_id)
        except LayoutError as e:
            problems.append(str(e))
            continue
        if out == src.folder or src.folder in out.parents:
            problems.append(f"--out {out}: inside the source folder {src.folder}; put the bundle elsewhere")
        name = spec.name or default_name(src)
        if not _NAME.match(name) or name == ASSETS:
            problems.append(f"{src.folder}: name {name!r} cannot be a folder of the bundle (letters, digits, '._+-'); "
                            "give another with --name")
        elif name in names:
            problems.append(f"{src.folder}: name {name!r} is taken by {names[name]}; give each a distinct --name")
        names.setdefault(name, src.folder)
        kind = spec.kind or detect_kind(src.folder, list(src.files), src.repo_type)
        if kind not in KINDS:
            problems.append(f"{src.folder}: cannot tell whether it is a model (config.json and weights), a tokenizer "
                            "or a dataset (a dataset card or data files); give --kind model|tokenizer|dataset"
                            if spec.kind is None else f"{src.folder}: --kind {spec.kind!r}: one of {', '.join(KINDS)}")
            continue
        lic, lic_from = licence(src.folder, list(src.files))
        plans.append(_Plan(spec, src, name, kind, lic, lic_from))
    if problems:
        raise BundleError("pack refused:\n  " + "\n  ".join(problems))
    return plans


def _copy(plan: _Plan, out: Path, progress: Any) -> dict[str, Any]:
    src = plan.source
    files, warnings = [], list(src.notes)
    mismatched, verified = [], 0
    for rel, path in src.files.items():
        etag = src.etags.get(rel)
        sha, size, sha1 = copy_and_hash(path, out / plan.name / rel, bool(etag and _SHA1.match(etag)), progress)
        entry = {"path": rel, "bytes": size, "sha256": sha}
        if etag:
            entry["etag"] = etag
            match = etag_matches(etag, sha, sha1)
            verified += match is True
            if match is False:
                mismatched.append(rel)
        files.append(entry)
    if mismatched:
        warnings.append(f"{len(mismatched)} file(s) differ from what the hub served (their etag): "
                        + ", ".join(mismatched[:5]) + (" ..." if len(mismatched) > 5 else "")
                        + "; changed after download?")
    if plan.license == "unknown":
        warnings.append("no licence found (no license: in README.md's front matter, no LICENSE/NOTICE file)")
    return {"name": plan.name, "kind": plan.kind, "path": plan.name,
            "source": {**src.record(), "files_matching_hub_etag": verified},
            "license": plan.license, "license_from": plan.license_from,
            "bytes": sum(f["bytes"] for f in files), "warnings": warnings, "files": files}


def pack(specs: list[Spec], out: str | Path, progress: bool = True) -> Bundle:
    """Copy each spec's folder to out/<name>/ and write out/assets.json; every problem found before copying is
    raised together (BundleError), naming the folder. Returns the bundle as written."""
    out = Path(out).expanduser().absolute()
    if not specs:
        raise BundleError("pack: give at least one source folder")
    plans = _plan(specs, out)
    out.mkdir(parents=True, exist_ok=True)
    total = sum(p.stat().st_size for plan in plans for p in plan.source.files.values())
    b = bar(total, f"pack {out.name}", progress)
    try:
        entries = [_copy(plan, out, b) for plan in plans]
    finally:
        if b is not None:
            b.close()
    data = {"format": FORMAT, "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tool": "kgov-train assets pack", "entries": entries}
    tmp = out / (ASSETS + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / ASSETS)
    bundle = load(out)
    assert bundle is not None
    return bundle
