"""The licence of a base model: the recipe's `base.license`, checked against what the folder says of itself (a
LICENSE file, the `license:` field of README.md's YAML front matter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data_prep.hashing import sha256_file
from kgov_train.carry.card import front_matter

LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md")
UNKNOWN = ("", "unknown", "none", "null", "?")


def is_unknown(license: str | None) -> bool:
    return license is None or str(license).strip().lower() in UNKNOWN


def license_file(folder: Path) -> dict[str, Any] | None:
    """The folder's LICENSE file: {path, sha256, first_line} (the first line that is not blank), None without one."""
    for name in LICENSE_FILES:
        path = folder / name
        if path.is_file():
            first = ""
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.strip():
                        first = line.strip()[:200]
                        break
            return {"path": name, "sha256": sha256_file(path), "first_line": first}
    return None


def readme_license(folder: Path) -> str | None:
    """README.md's front-matter licence: `license:` (with `license: other`, its `license_name:`), None without one."""
    meta = front_matter(folder)
    if not isinstance(meta, dict) or meta.get("license") in (None, ""):
        return None
    value = meta["license"]
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    if str(value).lower() == "other" and meta.get("license_name"):
        return f"other ({meta['license_name']})"
    return str(value)


def _norm(s: str) -> str:
    return "".join(ch for ch in s.lower() if ch.isalnum())


def agrees(recipe: str, readme: str) -> bool:
    """The recipe's licence names the README's: equal but for case and punctuation (apache-2.0 = Apache 2.0), or
    one contains the other (llama2 in "other (llama2)")."""
    a, b = _norm(recipe), _norm(readme)
    return bool(a) and (a == b or a in b or b in a)


def license_problems(license: str | None, allow_unknown: bool, key: str = "base") -> list[str]:
    if is_unknown(license) and not allow_unknown:
        return [f"{key}.license: '{license or ''}' is not a licence; name the base model's licence (e.g. apache-2.0, "
                f"llama3.2) or set {key}.allow_unknown_license=true"]
    return []


def license_warnings(folder: Path, license: str | None, readme: str | None, has_file: bool,
                     key: str = "base") -> list[str]:
    """A recipe licence that contradicts README.md's front matter (`readme`), and a folder that states no licence."""
    if readme is not None and not is_unknown(license) and not agrees(str(license), readme):
        return [f"{key}.license: '{license}' but {folder / 'README.md'} says license: {readme}"]
    if readme is None and not has_file:
        return [f"{key}.path: {folder} has neither a LICENSE file nor a license field in README.md; "
                f"{key}.license is the only record of the licence"]
    return []
