"""bom.cdx.json: the model's bill of materials as a CycloneDX 1.6 ML-BOM (JSON), beside MODEL_CARD.md and bom.json.

Built with cyclonedx-python-lib from the facts of kgov_train.papers.facts.gather() and checked against the CycloneDX
1.6 JSON schema the library ships (JsonStrictValidator, offline) before anything is written:

    metadata       timestamp (the facts' generated_at), tools (kgov-train, cyclonedx-python-lib), component = the
                   trained model (machine-learning-model: recipe name, stage as version, final/ weights' SHA-256,
                   final/ files as nested file components, modelCard, kgov:* properties)
    components     a data component per data-stage source (licence; its input files nested with SHA-256 and
                   licence), one per sft/dpo data file (SHA-256), the base model (imported foundation model,
                   init_from checkpoint or the upstream stage's final/, with its hashes and licence), and the key
                   packages (kgov_train.papers.bom.KEY_PACKAGES) as library/framework components with purls
    dependencies   the model on its datasets, base model and software

The library (11.12) has no model for a component's `modelCard` or `data`: kgov_train.papers.cdx_card builds them as
plain JSON and they are added to the library's output by bom-ref (see _extend), then the whole document is validated.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.contrib.this.builders import this_component
from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from packageurl import PackageURL

from kgov_train.papers import cdx_card
from kgov_train.papers.bom import KEY_PACKAGES, installed_versions

SPEC = SchemaVersion.V1_6
FRAMEWORKS = ("torch", "transformers", "deepspeed")  # the rest of KEY_PACKAGES are libraries
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")
_UNKNOWN_LICENSES = (None, "", "unknown", "none")


class CycloneDXError(ValueError):
    """The CycloneDX document does not validate against the schema."""


def _hashes(*shas: str | None) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=s) for s in shas if s]


def _licenses(value: str | None) -> list:
    """An SPDX id (or expression) where the value is one, else a licence name; none for unknown."""
    if value is None or str(value).strip().lower() in _UNKNOWN_LICENSES:
        return []
    return [LicenseFactory().make_from_string(str(value))]


def _props(pairs: Iterable[tuple[str, Any]]) -> list[Property]:
    return [Property(name=k, value=v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
            for k, v in pairs if v is not None and v != "" and v != []]


class _Refs:
    """Unique, readable bom-refs."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, ref: str) -> str:
        out, n = ref, 1
        while out in self.used:
            n += 1
            out = f"{ref}#{n}"
        self.used.add(out)
        return out


def _file(name: str, sha: str | None, ref: str, props: Iterable[tuple[str, Any]] = (), lic: str | None = None
          ) -> Component:
    return Component(type=ComponentType.FILE, name=name, bom_ref=ref, hashes=_hashes(sha), licenses=_licenses(lic),
                     properties=_props(props))


def _model(f: dict[str, Any], refs: _Refs) -> Component:
    weights = [o for o in f["final_files"] if o["path"].endswith(WEIGHTS)]
    c = f.get("compute") or {}
    own = f["chain"][-1] if f.get("chain") else {}
    tok = f.get("tokenizer") or {}
    props = [("kgov:stage", f["stage"]), ("kgov:status", f["status"]), ("kgov:recipe", f.get("recipe_name")),
             ("kgov:parameters", c.get("parameters")), ("kgov:tokens_seen", c.get("tokens_seen")),
             ("kgov:steps", c.get("steps")), ("kgov:world_size", c.get("world_size")), ("kgov:device", c.get("device")),
             ("kgov:precision", c.get("precision")), ("kgov:approach", cdx_card.APPROACH[cdx_card.stage_kind(
                 f["stage"])][1]), ("kgov:fingerprint", own.get("fingerprint")),
             ("kgov:config_sha256", own.get("config_sha256")), ("kgov:run_dir", f["run_dir"]),
             ("kgov:final_dir", f["final_dir"]), ("kgov:git_commit", f.get("git_commit")),
             ("kgov:data_cutoff", f.get("data_cutoff")), ("kgov:base", (f.get("base") or {}).get("kind")),
             ("kgov:tokenizer_sha256", tok.get("sha256")), ("kgov:tokenizer", " ".join(
                 str(x) for x in (tok.get("model_type"), tok.get("vocab_size")) if x is not None) or None),
             ("kgov:shards_index_sha256", (f.get("shards") or {}).get("index_sha256")),
             ("kgov:stages", ",".join(s["stage"] for s in f.get("chain") or []))]
    for s in f.get("chain") or []:  # the chain it was built by, oldest first
        props.append((f"kgov:stage:{s['stage']}", f"status {s.get('status')}, fingerprint {s.get('fingerprint')}, "
                                                  f"config sha256 {s.get('config_sha256')}, ended {s.get('ended_at')}"))
    if (f.get("base") or {}).get("kind") == "scratch":
        props += [(f"kgov:base:model:{k}", v) for k, v in (f["base"].get("model") or {}).items()]
    files = [_file(f"final/{o['path']}", o["sha256"], refs(f"model-file:{o['path']}"), [("kgov:bytes", o.get("bytes"))])
             for o in f["final_files"]]
    name = f.get("recipe_name") or Path(f["run_dir"]).name
    return Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=name, version=f["stage"],
                     bom_ref=refs(f"model:{name}@{f['stage']}"), hashes=_hashes(*(o["sha256"] for o in weights)),
                     description=f"{name} {f['stage']}: trained by kgov-train in {f['run_dir']}",
                     properties=_props(props), components=files)


def _base(f: dict[str, Any], refs: _Refs) -> Component | None:
    b = f.get("base") or {}
    kind = b.get("kind")
    if kind == "imported":
        files = b.get("files") or []
        bundle = b.get("bundle") if isinstance(b.get("bundle"), dict) else {}
        lic = b.get("license") or bundle.get("license")
        props = [("kgov:base", kind), ("kgov:path", b.get("path"))] + [
            (f"kgov:{k}", b.get(k)) for k in ("architecture", "model_type", "parameters", "dtype", "weight_format",
                                              "vocab_size", "license_file", "readme_license", "allow_pickle",
                                              "trust_remote_code", "allow_unknown_license")]
        props += [(f"kgov:bundle:{k}", v) for k, v in bundle.items()]
        ext = []
        if bundle.get("bundle"):  # the air-gap bundle the base was carried in (kgov_train.carry): its assets.json,
            # which lists and hashes every file of the entry, hashed as the bundle hash (assets_sha256)
            p = Path(str(bundle["bundle"])) / "assets.json"
            ext.append(ExternalReference(
                type=ExternalReferenceType.DISTRIBUTION, url=XsUri(p.as_uri() if p.is_absolute() else p.as_posix()),
                hashes=_hashes(bundle.get("assets_sha256") or bundle.get("sha256")),
                comment="air-gap bundle " + ", ".join(
                    f"{k} {bundle[k]}" for k in ("bundle", "entry", "source_id", "revision") if bundle.get(k))))
        c = Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=str(b.get("name") or "base"),
                      bom_ref=refs(f"base-model:{b.get('name')}"), licenses=_licenses(lic),
                      hashes=_hashes(*(e.get("sha256") for e in files if e["path"].endswith(WEIGHTS))),
                      properties=_props(props), external_references=ext,
                      components=[_file(e["path"], e.get("sha256"), refs(f"base-file:{e['path']}")) for e in files])
        return c
    if kind == "init_from":
        files = b.get("files") or []
        return Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=Path(b["path"]).name,
                         bom_ref=refs(f"base-model:{b['path']}"), description="model.init_from checkpoint",
                         hashes=_hashes(*(e["sha256"] for e in files if e["path"].endswith(WEIGHTS))),
                         properties=_props([("kgov:base", kind), ("kgov:path", b["path"])]),
                         components=[_file(e["path"], e["sha256"], refs(f"base-file:{e['path']}")) for e in files])
    if kind == "stage":  # fine-tuned from this run's upstream stage: its sealed final/ weights
        weights = b.get("weights_sha256") or {}
        name = f.get("recipe_name") or Path(f["run_dir"]).name
        return Component(type=ComponentType.MACHINE_LEARNING_MODEL, name=name, version=b["stage"],
                         bom_ref=refs(f"model:{name}@{b['stage']}"), hashes=_hashes(*weights.values()),
                         properties=_props([("kgov:base", kind), ("kgov:path", b.get("path")),
                                            ("kgov:fingerprint", b.get("fingerprint"))]),
                         components=[_file(p, s, refs(f"base-file:{b['stage']}/{p}")) for p, s in weights.items()])
    return None  # from scratch: the model recipe is in the model's properties


def _datasets(f: dict[str, Any], refs: _Refs) -> tuple[list[Component], dict[str, dict[str, Any]]]:
    """A data component per source (its input files nested) and per sft/dpo data file; {bom-ref: componentData}."""
    comps, data = [], {}
    by_source: dict[str, list[dict[str, Any]]] = {}
    for d in f.get("data_files") or []:
        by_source.setdefault(d.get("source") or "unattributed", []).append(d)
    sources = dict(f.get("sources") or {})
    for name in [*sources, *(n for n in by_source if n not in sources)]:
        s = sources.get(name) or {}
        ref = refs(f"data:{name}")
        nested = [_file(d["path"], d.get("sha256"), refs(f"data-file:{d['path']}"),
                        [("kgov:bytes", d.get("bytes")), ("kgov:file", d.get("file")),
                         ("kgov:docs_kept", d.get("docs_kept")), ("kgov:docs_rejected", d.get("docs_rejected"))],
                        d.get("license")) for d in by_source.get(name, [])]
        t = s.get("tokens") or {}
        props = [("kgov:stage", "data"), ("kgov:license", s.get("license")), ("kgov:weight", s.get("weight"))] + [
            (f"kgov:{k}", s.get(k)) for k in ("files", "docs_in", "docs_kept", "docs_rejected", "chars_kept")] + [
            (f"kgov:tokens:{k}", v) for k, v in t.items()]
        comps.append(Component(type=ComponentType.DATA, name=name, bom_ref=ref, licenses=_licenses(s.get("license")),
                               properties=_props(props), components=nested))
        data[ref] = cdx_card.source_data(name, s)
    for d in f.get("finetune_files") or []:
        ref = refs(f"data:{d['stage']}:{Path(d['path']).name}")
        comps.append(Component(type=ComponentType.DATA, name=Path(d["path"]).name, bom_ref=ref,
                               hashes=_hashes(d.get("sha256")),
                               properties=_props([("kgov:stage", d["stage"]), ("kgov:path", d["path"]),
                                                  ("kgov:bytes", d.get("bytes"))])))
        data[ref] = cdx_card.finetune_data(d)
    return comps, data


def _software(f: dict[str, Any]) -> list[Component]:
    installed = installed_versions()
    recorded = f.get("versions") or {}
    out = []
    for name in KEY_PACKAGES:
        version = installed.get(name)
        if version is None:
            continue
        purl = PackageURL(type="pypi", name=name, version=version)
        props = [("kgov:version_at_training", recorded.get(name))] if recorded.get(name) not in (None, version) else []
        out.append(Component(type=ComponentType.FRAMEWORK if name in FRAMEWORKS else ComponentType.LIBRARY,
                             name=name, version=version, purl=purl, bom_ref=purl.to_string(),
                             properties=_props(props)))
    return out


def _tool_version() -> str:
    try:
        return metadata.version("kgov-train")
    except metadata.PackageNotFoundError:
        return "unknown"


def _timestamp(f: dict[str, Any]) -> datetime | None:
    try:
        return datetime.strptime(f["generated_at"], "%Y-%m-%dT%H:%M:%S%z")
    except (KeyError, TypeError, ValueError):
        return None


def build_document(f: dict[str, Any]) -> dict[str, Any]:
    """The bom.cdx.json document (a dict) from the gathered facts; not yet validated."""
    refs = _Refs()
    model = _model(f, refs)
    base = _base(f, refs)
    datasets, data = _datasets(f, refs)
    software = _software(f)
    tool = Component(type=ComponentType.APPLICATION, name="kgov-train", version=_tool_version(),
                     properties=_props([("kgov:git_commit", f.get("git_commit"))]))
    bom = Bom(metadata=BomMetaData(timestamp=_timestamp(f), component=model,
                                   tools=ToolRepository(components=[tool, this_component()])),
              components=[*datasets, *([base] if base else []), *software])
    bom.register_dependency(model, [*datasets, *([base] if base else []), *software])
    doc = json.loads(JsonV1Dot6(bom).output_as_string())
    dataset_refs = [str(c.bom_ref) for c in datasets]
    extra = {str(model.bom_ref): {"modelCard": cdx_card.model_card(f, dataset_refs)}}
    if base is not None:
        extra[str(base.bom_ref)] = {"modelCard": cdx_card.base_model_card(f["base"])}
    extra.update({ref: {"data": [d]} for ref, d in data.items()})
    _extend(doc, extra)
    first = ("$schema", "bomFormat", "specVersion", "serialNumber", "version", "metadata")
    return {**{k: doc[k] for k in first if k in doc}, **doc}  # the header first, for readers


def _extend(doc: dict[str, Any], extra: dict[str, dict[str, Any]]) -> None:
    """Add the fields the library cannot express (modelCard, data) to the components with these bom-refs."""
    todo = dict(extra)
    stack = [doc["metadata"]["component"], *doc.get("components", [])]
    while stack:
        c = stack.pop()
        c.update(todo.pop(c.get("bom-ref"), {}))
        stack += c.get("components", [])
    if todo:
        raise CycloneDXError(f"no component with bom-ref {sorted(todo)} in the library's output")


@lru_cache(maxsize=1)
def _validator():
    from cyclonedx.validation.json import JsonStrictValidator  # jsonschema's format checkers: ~1 s to import

    return JsonStrictValidator(SPEC)  # the schema files ship with the library; $refs resolve locally, no network


def validate(text: str, name: str) -> None:
    """Raise CycloneDXError naming `name` and the first schema violation (and where it is) if `text` is not a
    valid CycloneDX 1.6 JSON document."""
    error = _validator().validate_str(text)
    if error is not None:
        e = error.data
        where = getattr(e, "json_path", None) or "$"
        node, owner = json.loads(text), None
        for step in getattr(e, "absolute_path", ()):  # the innermost component (or other object) it is in
            node = node[step]
            if isinstance(node, dict) and (node.get("bom-ref") or node.get("name")):
                owner = node.get("bom-ref") or node.get("name")
        raise CycloneDXError(f"{name} is not a valid CycloneDX {SPEC.to_version()} document: {where}"
                             + (f" (in {owner!r})" if owner else "") + f": {getattr(e, 'message', e)}")


def render_cyclonedx(f: dict[str, Any], name: str = "bom.cdx.json") -> str:
    """The validated bom.cdx.json text; raises CycloneDXError naming `name` if it does not validate."""
    text = json.dumps(build_document(f), indent=1, ensure_ascii=False) + "\n"
    validate(text, name)
    return text
