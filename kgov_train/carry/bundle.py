"""A bundle on disk: BUNDLE/assets.json and one folder per entry; reading it, finding the entry a path lies in, and
checking entries against it.

assets.json (format kgov-assets/1):
    {"format", "created_at", "tool", "entries": [{"name", "kind", "path" (the entry's folder, relative to the
     bundle), "source": {"layout", "id", "repo_type", "revision", "refs", "downloaded_at", "from"}, "license",
     "license_from", "bytes", "warnings", "files": [{"path", "bytes", "sha256", "etag"?}]}]}
The bundle hash is the sha256 of assets.json's bytes: it seals every file's sha256, so one number written down on
the connected side proves the whole bundle on the closed side.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kgov_train.carry.hashing import bar, sha256_file

FORMAT = "kgov-assets/1"
ASSETS = "assets.json"


class BundleError(ValueError):
    """A bundle that cannot be read (assets.json missing, not JSON, not kgov-assets); the message names the file."""


@dataclass
class Entry:
    """One carried folder of a bundle, as assets.json lists it."""

    bundle: Path  # the bundle folder
    name: str
    kind: str
    path: str  # the entry's folder, relative to the bundle
    source: dict[str, Any]
    license: str
    license_from: str | None
    files: list[dict[str, Any]]  # {path, bytes, sha256[, etag]}
    assets_sha256: str  # the bundle hash: sha256 of assets.json
    warnings: list[str] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.bundle / self.path

    @property
    def assets(self) -> Path:
        return self.bundle / ASSETS

    def record(self) -> dict[str, Any]:
        """What a manifest or the model's papers say of the entry: where it lies, the bundle hash, its provenance."""
        return {"bundle": str(self.bundle), "entry": self.name, "kind": self.kind, "path": str(self.folder),
                "assets_sha256": self.assets_sha256, "source_id": self.source.get("id"),
                "revision": self.source.get("revision"), "layout": self.source.get("layout"),
                "license": self.license, "files": len(self.files),
                "bytes": sum(int(f.get("bytes") or 0) for f in self.files)}


@dataclass
class Problem:
    """A file of an entry that is not as assets.json lists it: changed, missing or extra."""

    what: str  # changed | missing | extra | size
    path: Path
    expected: Any = None
    found: Any = None

    def __str__(self) -> str:
        if self.what == "changed":
            return f"{self.path}: changed (sha256 expected {self.expected}, found {self.found})"
        if self.what == "size":
            return f"{self.path}: changed ({self.found} bytes, {self.expected} expected)"
        if self.what == "missing":
            return f"{self.path}: missing (listed in {self.expected})"
        return f"{self.path}: extra file, not listed in {self.expected}"


def _safe(rel: Any) -> bool:
    if not isinstance(rel, str) or not rel or "\\" in rel:
        return False
    p = PurePosixPath(rel)
    return not p.is_absolute() and ".." not in p.parts and p.parts != (".",)


@dataclass
class Bundle:
    folder: Path
    sha256: str  # sha256 of assets.json
    data: dict[str, Any]
    entries: list[Entry]

    @property
    def assets(self) -> Path:
        return self.folder / ASSETS

    def find(self, repo_id: str) -> Entry | None:
        """The entry carrying hub repo `repo_id` (owner/name): by its recorded source id, else by its name."""
        for e in self.entries:
            if e.source.get("id") == repo_id:
                return e
        name = repo_id.rsplit("/", 1)[-1]
        return next((e for e in self.entries if e.name == name), None)


def load(folder: str | Path, strict: bool = True) -> Bundle | None:
    """The bundle at folder; BundleError when assets.json is missing, not JSON or malformed. strict=False: None
    when there is no assets.json or it is another program's JSON (not kgov-assets)."""
    folder = Path(folder).expanduser().absolute()
    path = folder / ASSETS
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a folder (give the bundle folder, the one holding {ASSETS})")
    if not path.is_file():
        if not strict:
            return None
        raise BundleError(f"{path}: missing; not a bundle (or its pack did not finish)")
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BundleError(f"{path}: not JSON ({e})") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith("kgov-assets/"):
        if not strict:
            return None
        raise BundleError(f"{path}: not a kgov-assets file (format {fmt!r}, expected {FORMAT!r})")
    if fmt != FORMAT:
        raise BundleError(f"{path}: format {fmt!r}, this kgov-train reads {FORMAT!r}")
    sha = hashlib.sha256(raw).hexdigest()
    entries = []
    for i, e in enumerate(data.get("entries") or []):
        where = f"{path}: entries[{i}]"
        if not isinstance(e, dict) or not _safe(e.get("path")) or not isinstance(e.get("files"), list):
            raise BundleError(f"{where}: needs a relative 'path' inside the bundle and a 'files' list")
        bad = [f for f in e["files"] if not isinstance(f, dict) or not _safe(f.get("path"))
               or not isinstance(f.get("sha256"), str)]
        if bad:
            raise BundleError(f"{where} ({e.get('name')}): file {bad[0]!r} needs a relative 'path' and a 'sha256'")
        entries.append(Entry(bundle=folder, name=str(e.get("name") or e["path"]), kind=str(e.get("kind")),
                             path=e["path"], source=dict(e.get("source") or {}),
                             license=str(e.get("license") or "unknown"), license_from=e.get("license_from"),
                             files=e["files"], assets_sha256=sha, warnings=list(e.get("warnings") or [])))
    return Bundle(folder, sha, data, entries)


def locate(path: str | Path) -> Entry | None:
    """The bundle entry whose folder holds `path` (the entry folder itself or anything below it): the nearest
    ancestor folder with a kgov-assets assets.json that lists it. None when path is in no bundle; BundleError when
    the nearest assets.json of ours cannot be read."""
    start = Path(path).expanduser().absolute()
    tried: set[Path] = set()
    for p in dict.fromkeys((start, start.resolve())):
        for d in (p, *p.parents):
            if d in tried:
                continue
            tried.add(d)
            if not (d / ASSETS).is_file():
                continue
            found = load(d, strict=False)
            if found is None:
                continue
            for entry in found.entries:
                folder = entry.folder
                if p == folder or folder in p.parents:
                    return entry
            return None
    return None


def _listed(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or (p.is_symlink() and not p.exists()))


def compare(entry: Entry, known: dict[str, str] | None = None, quick: bool = False,
            progress: bool = False) -> list[Problem]:
    """Every file of the entry against assets.json: changed (sha256; quick: size only), missing, extra (a file in
    the entry's folder that is not listed). `known`: absolute path -> sha256 hashed a moment ago (not read again)."""
    known = known or {}
    folder = entry.folder
    problems: list[Problem] = []
    if not folder.is_dir():
        return [Problem("missing", folder, entry.assets)]
    todo = []
    for f in entry.files:
        p = folder / f["path"]
        if not p.is_file():
            problems.append(Problem("missing", p, entry.assets))
        elif quick:
            if p.stat().st_size != f.get("bytes", p.stat().st_size):
                problems.append(Problem("size", p, f.get("bytes"), p.stat().st_size))
        else:
            todo.append((p, f))
    b = bar(sum(p.stat().st_size for p, _ in todo if str(p) not in known), f"sha256 {entry.name}", progress)
    try:
        for p, f in todo:
            sha = known.get(str(p)) or sha256_file(p, b)
            if sha != f["sha256"]:
                problems.append(Problem("changed", p, f["sha256"], sha))
    finally:
        if b is not None:
            b.close()
    listed = {(folder / f["path"]).as_posix() for f in entry.files}
    problems += [Problem("extra", p, entry.assets) for p in _listed(folder) if p.as_posix() not in listed]
    return problems


def check(entry: Entry, known: dict[str, str] | None = None, quick: bool = False,
          progress: bool = False) -> list[str]:
    """What is wrong with the entry's files against assets.json, one line each naming the file; empty when every
    file is there, as listed, and nothing else is. quick=True compares sizes only (no hashing)."""
    return [str(p) for p in compare(entry, known, quick, progress)]


def verify(folder: str | Path, progress: bool = True) -> tuple[Bundle, dict[str, list[Problem]]]:
    """Re-hash every file of every entry: (the bundle, entry name -> problems). Extra files at the bundle's top
    (beside the entry folders and assets.json) are named under the entry name ''."""
    bundle = load(folder)
    out = {e.name: compare(e, progress=progress) for e in bundle.entries}
    tops = {PurePosixPath(e.path).parts[0] for e in bundle.entries} | {ASSETS}
    stray = [p for p in sorted(bundle.folder.iterdir()) if p.name not in tops]
    for p in stray:
        files = _listed(p) if p.is_dir() else [p]
        out.setdefault("", []).extend(Problem("extra", f, bundle.assets) for f in files)
    return bundle, out
