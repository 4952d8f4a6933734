"""Where a folder came from: the two layouts the Hugging Face hub writes on the connected side, or neither.

- local_dir: `huggingface_hub.snapshot_download(repo_id, local_dir=X)` (and `huggingface-cli download --local-dir`)
  writes the repo's files into X and, per file, `X/.cache/huggingface/download/<relpath>.metadata`: three lines,
  the commit hash, the etag and the Unix time it was written (huggingface_hub/_local_folder.py). The repo id is not
  recorded there: give it (`--repo-id`) or it stays unknown.
- hub_cache: the hub cache, `<cache>/models--owner--name/snapshots/<commit>/` (`datasets--`, `spaces--`), whose
  files are symlinks into `../../blobs/<etag>`; the repo id and the revision are in the path, `refs/<name>` name the
  commit. The folder `models--owner--name` itself is taken at its `refs/main` snapshot (or its only one).
- plain: anything else; source id and revision unknown.

The etag is what the hub served: the sha256 of the content for an LFS file (weights, parquet), the git blob sha1
otherwise; pack checks the bytes it copies against it, so a file changed after download is named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

METADATA_DIR = Path(".cache") / "huggingface"  # local_dir's bookkeeping (download/, .gitignore, CACHEDIR.TAG)
SKIP_DIRS = (".git", ".cache")  # never copied: a clone's objects, the hub's bookkeeping
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_CACHE_REPO = re.compile(r"^(models|datasets|spaces)--(.+)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
LOCAL_DIR, HUB_CACHE, PLAIN = "local_dir", "hub_cache", "plain"


class LayoutError(ValueError):
    """A source folder that cannot be packed; the message names it."""


@dataclass
class Source:
    """A source folder as found: its files (relative path -> the path to read) and what the layout told of it."""

    folder: Path  # the folder given (for hub_cache: the snapshot)
    layout: str  # local_dir | hub_cache | plain
    repo_id: str | None = None
    repo_type: str | None = None  # model | dataset | space, when the layout says
    revision: str | None = None  # the commit
    refs: list[str] = field(default_factory=list)  # hub_cache: refs/<name> pointing at the commit
    downloaded_at: str | None = None  # local_dir: the latest metadata time
    files: dict[str, Path] = field(default_factory=dict)  # relative posix path -> path to read (symlinks resolved)
    etags: dict[str, str] = field(default_factory=dict)  # relative path -> the hub's etag
    notes: list[str] = field(default_factory=list)  # what could not be told, what looks wrong

    def record(self) -> dict:
        return {"layout": self.layout, "id": self.repo_id, "repo_type": self.repo_type, "revision": self.revision,
                "refs": self.refs, "downloaded_at": self.downloaded_at, "from": str(self.folder)}


def _walk(folder: Path) -> dict[str, Path]:
    """Every file below folder but in .git/ and .cache/ at any depth, by relative posix path, sorted; symlinked
    files are followed (the hub cache), a dangling link is an error."""
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part in SKIP_DIRS for part in rel.parts[:-1]) or (p.is_dir() and p.name in SKIP_DIRS):
            continue
        if p.is_symlink() and not p.exists():
            raise LayoutError(f"{p}: a symlink to a missing file ({p.readlink()}); download it again")
        if p.is_file():
            out[rel.as_posix()] = p.resolve() if p.is_symlink() else p
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local_dir(folder: Path, src: Source) -> None:
    meta_root = folder / METADATA_DIR / "download"
    commits: dict[str, int] = {}
    times: list[float] = []
    for meta in sorted(meta_root.rglob("*.metadata")):
        rel = meta.relative_to(meta_root).as_posix()[: -len(".metadata")]
        try:
            lines = meta.read_text(encoding="utf-8").splitlines()
            commit, etag, ts = lines[0].strip(), lines[1].strip(), float(lines[2].strip())
        except (OSError, UnicodeDecodeError, IndexError, ValueError):
            src.notes.append(f"{meta}: not a hub download metadata file (commit, etag, time); ignored")
            continue
        if rel not in src.files:
            src.notes.append(f"{rel}: downloaded (per {meta.name}) but no longer in the folder")
            continue
        commits[commit] = commits.get(commit, 0) + 1
        src.etags[rel] = etag
        times.append(ts)
    if times:
        src.downloaded_at = _iso(max(times))
    if len(commits) == 1:
        src.revision = next(iter(commits))
    elif commits:
        src.revision = max(commits, key=lambda c: commits[c])
        src.notes.append(f"files of {len(commits)} commits ({', '.join(sorted(commits))}); revision is the one "
                         f"most files came from")
    unlisted = sorted(set(src.files) - set(src.etags))
    if unlisted:
        src.notes.append(f"{len(unlisted)} file(s) without download metadata (added after download?): "
                         + ", ".join(unlisted[:5]) + (" ..." if len(unlisted) > 5 else ""))
    src.notes.append("snapshot_download(local_dir=...) does not record the repo id" if src.repo_id is None
                     else "repo id as given (the download metadata does not record it)")


def _cache_repo(folder: Path) -> tuple[Path, Path] | None:
    """(repo folder models--owner--name, snapshot) when folder is a hub cache snapshot or repo folder."""
    if folder.parent.name == "snapshots" and _CACHE_REPO.match(folder.parent.parent.name):
        return folder.parent.parent, folder
    if _CACHE_REPO.match(folder.name) and (folder / "snapshots").is_dir():
        snaps = sorted(p for p in (folder / "snapshots").iterdir() if p.is_dir())
        main = folder / "refs" / "main"
        if main.is_file():
            commit = main.read_text(encoding="utf-8").strip()
            if (folder / "snapshots" / commit).is_dir():
                return folder, folder / "snapshots" / commit
        if len(snaps) == 1:
            return folder, snaps[0]
        raise LayoutError(f"{folder}: {len(snaps)} snapshots and no refs/main naming one; give the snapshot folder "
                          f"({folder / 'snapshots'}/<commit>)")
    return None


def _hub_cache(repo: Path, src: Source) -> None:
    kind, name = _CACHE_REPO.match(repo.name).groups()  # type: ignore[union-attr]
    src.repo_type = REPO_TYPES[kind]
    src.repo_id = src.repo_id or name.replace("--", "/", 1)
    src.revision = src.folder.name if _COMMIT.match(src.folder.name) else None
    if src.revision is None:
        src.notes.append(f"snapshot folder name {src.folder.name!r} is not a commit hash")
    refs = repo / "refs"
    if refs.is_dir():
        src.refs = sorted(r.relative_to(refs).as_posix() for r in refs.rglob("*")
                          if r.is_file() and r.read_text(encoding="utf-8").strip() == src.folder.name)
    for rel, target in src.files.items():
        if target.parent.name == "blobs":  # the blob's name is the etag
            src.etags[rel] = target.name


def find_source(path: str | Path, repo_id: str | None = None) -> Source:
    """The folder at `path` with its files and provenance; LayoutError when it is not a readable folder."""
    folder = Path(path).expanduser().absolute()
    if not folder.exists():
        raise LayoutError(f"{folder}: does not exist")
    if not folder.is_dir():
        raise LayoutError(f"{folder}: not a folder (give the folder the model, tokenizer or dataset was "
                          "downloaded into)")
    cache = _cache_repo(folder)
    if cache is not None:
        src = Source(cache[1], HUB_CACHE, repo_id=repo_id)
        src.files = _walk(src.folder)
        _hub_cache(cache[0], src)
    elif (folder / METADATA_DIR / "download").is_dir():
        src = Source(folder, LOCAL_DIR, repo_id=repo_id)
        src.files = _walk(folder)
        _local_dir(folder, src)
    else:
        src = Source(folder, PLAIN, repo_id=repo_id)
        src.files = _walk(folder)
        if repo_id is None:
            src.notes.append("a plain folder: no hub download metadata, source id and revision unknown")
    if not src.files:
        raise LayoutError(f"{src.folder}: no files to pack")
    return src


def etag_matches(etag: str, sha256: str, git_sha1: str | None) -> bool | None:
    """Whether the content hashed is what the hub served under `etag`; None when the etag is neither hash."""
    etag = etag.strip('"').lower()
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        return etag == sha256
    if re.fullmatch(r"[0-9a-f]{40}", etag) and git_sha1 is not None:
        return etag == git_sha1
    return None
