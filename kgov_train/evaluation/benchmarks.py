"""The Korean benchmarks lm-evaluation-harness ships (KoBEST, KMMLU, HAE-RAE Bench, CLIcK, KorMedMCQA, KBL), run
from local copies of their datasets.

lm-eval's own task configs name each dataset by its hub id (`dataset_path: skt/kobest_v1`). For eval.benchmarks, the
families' task folders are copied from the installed lm-eval into <stage_dir>/lm_eval_tasks/ with every
`dataset_path: <hub id>` rewritten to the dataset's local folder (found under eval.datasets_dir, see `local_folder`),
so `datasets.load_dataset` reads the same files, configs (README.md `configs:`) and splits a hub download holds, and
nothing else of the task changes: prompts, few-shot splits, metrics and group aggregates stay lm-eval's.

A requested name may be a family (`kmmlu`), a group (`kmmlu_stem`, `kmmlu_hard`), a tag or a single task
(`kobest_boolq`). `plan` resolves each to its leaf tasks and the datasets they read, before any model is loaded: a
dataset that is not there is one line naming the benchmark and the folder expected.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from kgov_train import carry

# benchmark family -> its folder under lm_eval/tasks
FAMILIES = {"kobest": "kobest", "kmmlu": "kmmlu", "haerae": "haerae", "click": "click",
            "kormedmcqa": "kormedmcqa", "kbl": "kbl"}
GENERATE = "generate_until"
_DATASET_PATH = re.compile(r"^(\s*dataset_path\s*:\s*)(['\"]?)([^\s'\"#]+)\2(\s*(#.*)?)$", re.MULTILINE)


class BenchmarkError(ValueError):
    pass


def said(e: Exception, limit: int = 300) -> str:
    """An exception as one short line: datasets' "file not found" lists some 300 file suffixes."""
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= limit else text[:limit] + "…"


def lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


def family_of(name: str, key: str = "eval.benchmarks") -> str:
    """The family a benchmark name belongs to: `kmmlu_hard_accounting` -> kmmlu."""
    for family in sorted(FAMILIES, key=len, reverse=True):
        if name == family or name.startswith(family + "_"):
            return family
    raise BenchmarkError(f"{key}: '{name}' is none of the Korean benchmarks {sorted(FAMILIES)} nor one of "
                         "their groups or tasks (e.g. kobest_boolq, kmmlu_stem, haerae_history, click_cul); for "
                         "another lm-eval task, put a local task folder in eval.task_dirs and name it in eval.tasks")


def local_folder(datasets_dir: Path, hub_id: str) -> Path | None:
    """The local copy of a hub dataset under datasets_dir: the entry carrying it when datasets_dir is a bundle of
    `kgov-train assets pack` (kgov_train.carry), or any of the layouts a download writes: <dir>/<owner>/<name>
    (snapshot_download(local_dir=...)), <dir>/<name>, or the hub cache <dir>/datasets--<owner>--<name>/snapshots/
    <revision> (refs/main's revision, or the only one)."""
    try:
        bundle = carry.load(datasets_dir, strict=False)
    except carry.BundleError as e:
        raise BenchmarkError(f"eval.datasets_dir: {e}") from None
    entry = bundle.find(hub_id) if bundle is not None else None
    if entry is not None and entry.folder.is_dir():
        return entry.folder
    owner_name = hub_id.split("/")
    for candidate in (datasets_dir / hub_id, datasets_dir / owner_name[-1]):
        if candidate.is_dir():
            return candidate
    cache = datasets_dir / ("datasets--" + "--".join(owner_name))
    snapshots = sorted(p for p in (cache / "snapshots").glob("*") if p.is_dir()) if cache.is_dir() else []
    ref = cache / "refs" / "main"
    if ref.is_file() and (cache / "snapshots" / ref.read_text().strip()).is_dir():
        return cache / "snapshots" / ref.read_text().strip()
    return snapshots[0] if len(snapshots) == 1 else None


def expected_folder(datasets_dir: Path, hub_id: str) -> Path:
    return datasets_dir / hub_id


def copy_family(family: str, datasets_dir: Path, dest: Path) -> dict[str, Path]:
    """lm-eval's task folder of one family copied to dest with every dataset_path that has a local copy pointed at
    it; returns {hub id: local folder} of those found (others keep their hub id and fail in `plan` if used)."""
    src = lm_eval_tasks_dir() / FAMILIES[family]
    found: dict[str, Path] = {}

    def local(m: re.Match) -> str:
        hub_id = m.group(3)
        folder = local_folder(datasets_dir, hub_id)
        if folder is None:
            return m.group(0)
        found[hub_id] = folder.resolve()
        return f"{m.group(1)}{found[hub_id]}{m.group(4)}"

    for path in sorted(src.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".md":
            continue
        target = dest / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py":
            shutil.copyfile(path, target)
        else:  # task YAMLs, with or without a suffix (_default_haerae_yaml)
            target.write_text(_DATASET_PATH.sub(local, path.read_text(encoding="utf-8")), encoding="utf-8")
    return found


@dataclass
class Leaf:
    task: str
    dataset_path: str  # as in the task config: a hub id, or the local folder it was pointed at
    dataset_name: str | None  # the dataset config (KMMLU's subject, KoBEST's task); None: the default one
    split: str | None  # the split the task scores (test_split, else validation_split)
    output_type: str


@dataclass
class Plan:
    """The resolved eval.benchmarks: per requested name its leaf tasks, and the group aggregates of lm-eval."""

    names: list[str]
    leaves: dict[str, list[Leaf]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # group -> {children, weight_by_size}
    datasets: dict[str, Path] = field(default_factory=dict)  # hub id -> local folder

    def generative(self, name: str) -> bool:
        return any(leaf.output_type == GENERATE for leaf in self.leaves[name])


def _config(path: Path) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(path, resolve_func=False)


def _resolve(manager, name: str, plan: Plan, seen: set[str]) -> list[Leaf]:
    from lm_eval.tasks._index import Kind

    if name in seen:
        return []
    seen.add(name)
    entry = manager.task_index.get(name)
    if entry is None:
        raise BenchmarkError(f"'{name}' is not a task, group or tag of lm-eval's "
                             f"{family_of(name)} benchmarks")
    if entry.kind == Kind.TAG:
        return [leaf for t in sorted(entry.tags) for leaf in _resolve(manager, t, plan, seen)]
    cfg = _config(entry.yaml_path) if entry.yaml_path else dict(entry.cfg or {})
    if entry.kind == Kind.GROUP:
        children = [c if isinstance(c, str) else c.get("task") for c in cfg.get("task", [])]
        aggregate = (cfg.get("aggregate_metric_list") or [{}])
        aggregate = aggregate[0] if isinstance(aggregate, list) else aggregate
        plan.groups[name] = {"children": children, "weight_by_size": bool(aggregate.get("weight_by_size", True))}
        return [leaf for c in children if c for leaf in _resolve(manager, c, plan, seen)]
    return [Leaf(name, str(cfg.get("dataset_path", "")), cfg.get("dataset_name"),
                 cfg.get("test_split") or cfg.get("validation_split"), str(cfg.get("output_type", "")))]


def local_plan(names: list[str], datasets_dir: str | Path | None, out_dir: Path, key: str = "eval.benchmarks") -> Plan:
    """`plan` for a recipe: datasets_dir is eval.datasets_dir, key the recipe key that named the benchmarks."""
    if datasets_dir is None or not Path(str(datasets_dir)).is_dir():
        raise BenchmarkError(f"eval.datasets_dir: {datasets_dir} is not a folder; {key}={list(names)} read their "
                             "datasets from there")
    return plan(names, Path(str(datasets_dir)), out_dir, key)[0]


def resolve(names: list[str], datasets_dir: str | Path | None, key: str = "eval.benchmarks") -> Plan:
    """`local_plan` without keeping the task copies, for the recipe check and the stages' inputs: done once per
    process for the same names and folder (a failure is not remembered)."""
    return _resolved(tuple(names), None if datasets_dir is None else str(datasets_dir), key)


@lru_cache(maxsize=8)
def _resolved(names: tuple[str, ...], datasets_dir: str | None, key: str) -> Plan:
    with tempfile.TemporaryDirectory() as tmp:
        return local_plan(list(names), datasets_dir, Path(tmp), key)


def plan(names: list[str], datasets_dir: Path, out_dir: Path, key: str = "eval.benchmarks") -> tuple[Plan, list[Path]]:
    """Copy the families of `names` into out_dir (recreated by the caller), resolve every name to its leaf tasks and
    check each leaf's dataset has a local copy. Returns the plan and the task folders to index."""
    from lm_eval.tasks import TaskManager

    datasets_dir = Path(datasets_dir)
    families = sorted({family_of(n, key) for n in names})
    result = Plan(list(names))
    folders = []
    for family in families:
        dest = out_dir / f"benchmark-{family}"
        result.datasets.update(copy_family(family, datasets_dir, dest))
        folders.append(dest)
    manager = TaskManager(include_path=[str(p) for p in folders], include_defaults=False)
    local = {str(p) for p in result.datasets.values()}
    missing: dict[str, set[str]] = {}
    for name in names:
        try:
            result.leaves[name] = _resolve(manager, name, result, set())
        except BenchmarkError as e:
            raise BenchmarkError(f"{key}: {e}") from None
        if not result.leaves[name]:
            raise BenchmarkError(f"{key}: '{name}' resolves to no task")
        for leaf in result.leaves[name]:
            if leaf.dataset_path not in local:
                missing.setdefault(name, set()).add(leaf.dataset_path)
    if missing:
        lines = [f"{key}: {name} needs {hub} in {expected_folder(datasets_dir, hub)} (not found under "
                 f"eval.datasets_dir={datasets_dir}; download it on a connected machine and carry it in, "
                 "see docs/air_gap.md)" for name, hubs in missing.items() for hub in sorted(hubs)]
        raise BenchmarkError("\n".join(lines))
    return result, folders


def folder_files(folder: Path) -> list[Path]:
    """Every file of one local dataset copy (the hub's .cache/ download notes left out)."""
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and ".cache" not in p.relative_to(folder).parts]


def dataset_files(plan: Plan) -> list[Path]:
    """Every file of the local dataset copies the plan reads."""
    return [p for folder in sorted(set(plan.datasets.values())) for p in folder_files(folder)]


def _metrics(row: dict[str, Any]) -> dict[str, float]:
    """{metric: value} of one lm-eval results row: `acc,none` -> acc, `exact_match,strict-match` stays as is."""
    out = {}
    for key, value in row.items():
        metric, _, filt = key.partition(",")
        if "stderr" in metric or metric == "sample_len" or not isinstance(value, (int, float)) \
                or isinstance(value, bool):
            continue
        if value == value:  # not NaN
            out[metric if filt in ("", "none") else key] = round(float(value), 6)
    return out


def summarize(plan: Plan, results: dict[str, Any], samples: dict[str, Any]) -> dict[str, Any]:
    """Per requested benchmark: its score as lm-eval aggregates it, the macro average over its tasks, and every
    group and task below it with its item count.

    lm-eval's groups of these benchmarks weight every task by its size (`weight_by_size: true`: a micro average over
    all items); KMMLU's paper reports the macro average over its 45 subjects, given beside it as `macro`."""
    out: dict[str, Any] = {}
    for name in plan.names:
        leaves = [leaf.task for leaf in plan.leaves[name]]
        tasks = {t: {**_metrics(results.get(t, {})), "n": samples.get(t, {}).get("effective")} for t in leaves}
        accs = [r["acc"] for r in tasks.values() if "acc" in r]
        group = plan.groups.get(name)
        subgroups = {g: _metrics(results.get(g, {})) for g in _below(plan, name) if g in results}
        out[name] = {
            "score": _metrics(results.get(name, {})) if group else dict(tasks[name]),
            "aggregation": ("micro: mean over all items of its tasks (lm-eval weight_by_size)"
                            if group and group["weight_by_size"] else
                            "macro: mean over its tasks (lm-eval)" if group else "the task's own metric"),
            "macro": {"acc": round(sum(accs) / len(accs), 6)} if accs else {},
            "tasks": tasks,
            "groups": subgroups,
            "items": sum(r["n"] or 0 for r in tasks.values()),
        }
    return out


def _below(plan: Plan, name: str) -> list[str]:
    """The groups under a group, depth first (KMMLU's categories: kmmlu_stem, kmmlu_humss, ...)."""
    found = []
    for child in plan.groups.get(name, {}).get("children", []):
        if child in plan.groups:
            found += [child, *_below(plan, child)]
    return found


def provenance(plan: Plan, known: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """{hub id: {folder, bundle}} of the local copies; a copy inside a bundle (kgov_train.carry) is checked against
    its assets.json first, and one that differs stops the run, naming the file. known: {path: sha256} hashed a
    moment ago (the stage's manifest inputs), not read again."""
    known = known or {}
    out: dict[str, dict[str, Any]] = {}
    for hub_id, folder in sorted(plan.datasets.items()):
        entry = carry.locate(folder)
        out[hub_id] = {"folder": str(folder), "bundle": None}
        if entry is None:
            continue
        # the same files under the entry's own spelling of the folder (the bundle path as assets.json was found)
        hashed = {str(entry.folder / p.relative_to(folder)): known[str(p)] for p in folder_files(folder)
                  if str(p) in known}
        problems = carry.check(entry, known=hashed)
        if problems:
            raise BenchmarkError(f"eval.datasets_dir: {hub_id} in bundle {entry.bundle} differs from its "
                                 f"{carry.ASSETS}: " + "; ".join(problems[:5])
                                 + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
        record = entry.record()
        out[hub_id]["bundle"] = {k: record[k] for k in ("bundle", "entry", "assets_sha256", "source_id",
                                                          "revision", "license")}
    return out
