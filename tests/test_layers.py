"""The shape of the code: packages import downward only, with no cycle, counting imports inside functions too (a
function-level import may defer a heavy library, never dodge a cycle); data_prep knows nothing of kgov_train or
torch; no module of kgov_train grows past ~400 lines."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

# Lowest first. A package may import its own modules and any package of a lower layer, nothing else.
LAYERS = [
    ["data_prep.hashing"],
    ["data_prep.corpus", "data_prep.tokenizer"],
    ["data_prep.shards"],
    ["kgov_train.errors", "kgov_train.assets", "kgov_train.offline", "kgov_train.carry"],
    ["kgov_train.run_folder", "kgov_train.runlock", "kgov_train.launch"],
    ["kgov_train.manifest", "kgov_train.config", "kgov_train.foundation"],
    ["kgov_train.stage_cache"],
    ["kgov_train.chat", "kgov_train.papers", "kgov_train.evaluation"],
    ["kgov_train.compare"],
    ["kgov_train.train"],
    ["kgov_train.planner"],
    ["kgov_train.stages"],
    ["kgov_train.pipeline"],
    ["kgov_train.slurm"],
    ["kgov_train.cli"],
]
LAYER = {pkg: i for i, names in enumerate(LAYERS) for pkg in names}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for top in ("kgov_train", "data_prep"):
        for path in (REPO_ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _package(module: str) -> str:
    """kgov_train.train.resume -> kgov_train.train; kgov_train.cli -> kgov_train.cli; kgov_train -> kgov_train."""
    return ".".join(module.split(".")[:2])


def _imports(mods: dict[str, Path]) -> dict[str, set[tuple[str, int]]]:
    """module -> {(imported project module or third-party top name, line)}, at any depth of the file."""
    out: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for mod, path in mods.items():
        base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                prefix = node.module or ""
                if node.level:
                    prefix = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in mods else prefix for a in node.names]
            else:
                continue
            for t in targets:
                while t not in mods and "." in t and t.split(".")[0] in ("kgov_train", "data_prep"):
                    t = t.rsplit(".", 1)[0]
                out[mod].add((t, node.lineno))
    return out


MODS = _modules()
IMPORTS = _imports(MODS)


def test_every_package_has_a_layer():
    packages = {_package(m) for m in MODS} - {"kgov_train", "data_prep"}
    assert packages <= set(LAYER), f"add to LAYERS: {sorted(packages - set(LAYER))}"


def test_packages_import_downward_only():
    upward = []
    for mod, targets in IMPORTS.items():
        src = _package(mod)
        for target, line in targets:
            if target.split(".")[0] not in ("kgov_train", "data_prep") or target in ("kgov_train", "data_prep"):
                continue
            dst = _package(target)
            if dst != src and LAYER.get(dst, -1) >= LAYER.get(src, -1):
                upward.append(f"{MODS[mod].relative_to(REPO_ROOT)}:{line} imports {target} ({src} -> {dst})")
    assert not upward, "imports that go up or sideways:\n" + "\n".join(sorted(upward))


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, targets in IMPORTS.items():
        for target, _ in targets:
            if target in MODS and _package(target) != _package(mod):
                graph[_package(mod)].add(_package(target))
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_data_prep_imports_neither_kgov_train_nor_torch():
    bad = [f"{MODS[m].relative_to(REPO_ROOT)}:{line} imports {t}" for m, ts in IMPORTS.items() if m.startswith("data_prep")
           for t, line in ts if t.split(".")[0] in ("kgov_train", "torch", "transformers", "deepspeed")]
    assert not bad, "\n".join(bad)


def test_no_module_of_kgov_train_is_over_400_lines():
    long = {str(p.relative_to(REPO_ROOT)): n for p in (REPO_ROOT / "kgov_train").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these by concern: {long}"


# Writes that are the process's own business: a worker pool's initializer runs first in a fresh process (an entry
# point), and `tokenizers` has no API for its thread pool but an environment variable it reads at every call.
ENV_WRITERS = {("data_prep.shards.encode", "_worker_init"), ("data_prep.shards.encode", "_single_threaded")}


def test_library_code_never_writes_the_process_environment():
    """Only the process entry point (kgov_train/cli.py) sets os.environ; everything else hands an env to a child."""
    writes = []
    for mod, path in MODS.items():
        if mod == "kgov_train.cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = [(f.name, set(map(id, ast.walk(f)))) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)]
        for node in ast.walk(tree):
            target = None
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
                for t in getattr(node, "targets", None) or [getattr(node, "target", None)]:
                    if isinstance(t, ast.Subscript):
                        target = t.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("setdefault", "update", "pop", "__setitem__"):
                target = node.func.value
            if target is not None and ast.unparse(target) == "os.environ":
                inside = {name for name, ids in functions if id(node) in ids}
                if not any((mod, name) in ENV_WRITERS for name in inside):
                    writes.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not writes, "os.environ written by library code: " + ", ".join(writes)
