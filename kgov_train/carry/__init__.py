"""Carrying models, tokenizers and datasets across the air gap, with proof (docs/air_gap.md).

On the connected side `kgov-train assets pack SRC... --out BUNDLE` copies folders downloaded from the Hugging Face
hub into BUNDLE/<name>/ and writes BUNDLE/assets.json: per entry its kind, source repo id and revision (read from
the download layout), licence (from the card) and every file's path, size and sha256. On the closed side
`kgov-train assets verify BUNDLE` re-hashes every file; the bundle hash (sha256 of assets.json) is compared by eye.

The API other stages call:

    locate(path) -> Entry | None      the bundle entry whose folder holds path (e.g. base.path, a datasets_dir)
    check(entry, known=None, quick=False) -> list[str]
                                      what differs from assets.json, one line per file; [] when verified
                                      (known: absolute path -> sha256 hashed already; quick: sizes only)
    entry.record() -> dict            for manifests and papers: bundle, entry, kind, path, assets_sha256 (the
                                      bundle hash), source_id, revision, layout, license, files, bytes
    load(bundle) -> Bundle            its entries; bundle.find("skt/kobest_v1") -> the entry of that repo or None
    verify(bundle) -> (Bundle, {entry: [Problem]}); pack([Spec(path, ...)], out)

Lowest layer of kgov_train: imports only data_prep.hashing, the standard library, yaml and tqdm.
"""

from kgov_train.carry.bundle import (ASSETS, FORMAT, Bundle, BundleError, Entry, Problem, check, compare, load,
                                     locate, verify)
from kgov_train.carry.pack import Spec, pack

__all__ = ["ASSETS", "FORMAT", "Bundle", "BundleError", "Entry", "Problem", "Spec", "check", "compare", "load",
           "locate", "pack", "verify"]
