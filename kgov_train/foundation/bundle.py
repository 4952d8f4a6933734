"""A base model folder carried across the air gap in a bundle (kgov_train.carry, docs/air_gap.md): when base.path lies
inside a bundle entry, the entry is checked against the bundle's assets.json (sizes at the recipe check, sha256
when the stage runs, from the hashes it took anyway) and recorded in base.json: bundle, entry, bundle hash, source
repo id, revision, licence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kgov_train import carry


def _line(key: str, entry: carry.Entry, problem: str) -> str:
    return (f"{key}.path: {problem}; {entry.folder} is entry '{entry.name}' of the bundle {entry.bundle} (bundle hash "
            f"{entry.assets_sha256[:12]}…): copy the entry again from the carried medium and check it with "
            f"`kgov-train assets verify {entry.bundle}`")


def carried(folder: Path, key: str = "base") -> tuple[carry.Entry | None, list[str]]:
    """The bundle entry holding folder (None when it is in no bundle) and the cheap problems: a listed file missing
    or of another size, a file the bundle does not list. No hashing."""
    try:
        entry = carry.locate(folder)
    except carry.BundleError as e:
        return None, [f"{key}.path: {folder} lies below a bundle that cannot be read: {e}"]
    if entry is None:
        return None, []
    return entry, [_line(key, entry, p) for p in carry.check(entry, quick=True)]


def bundle_record(folder: Path, files: list[dict[str, Any]], key: str = "base") -> tuple[dict[str, Any] | None,
                                                                                         list[str]]:
    """(the entry's record for base.json, problems): every file of the entry against the bundle's sha256, taking
    the hashes of `files` ({path relative to folder, sha256}) rather than reading them again."""
    entry, problems = carried(folder, key)
    if entry is None or problems:
        return None, problems
    known = {str(folder / f["path"]): f["sha256"] for f in files}
    problems = [_line(key, entry, p) for p in carry.check(entry, known=known)]
    return (None if problems else {**entry.record(), "verified": True}), problems
