"""`pip install .` (a wheel, not editable) ships the recipes, sbatch templates and example data.

The checkout is built into a wheel and installed into a fresh venv, which borrows the test
environment's third-party packages (torch, hydra, datatrove...) but not its kgov_train, then
`kgov-train` runs from an empty folder outside the checkout: --help, the CPU stages of the smoke
recipe, a user's own recipe folder (--config-dir) and `submit --dry-run`. Offline: no package is
downloaded (--no-index, --no-build-isolation).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ASSET_DIRS = ("recipes", "slurm", "examples")
# what must never reach the build copy (or the wheel): environments, build outputs, runs, caches
_JUNK = (".git", ".venv", "build", "dist", "runs", "outputs", "wandb", "__pycache__", ".pytest_cache")


def _sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd}\nstdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}"
    return res


def _checkout_files() -> list[str]:
    """The files a checkout builds from: tracked and new ones, less what .gitignore ignores."""
    if (REPO / ".git").exists() and shutil.which("git"):
        out = _sh(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO).stdout
        return sorted(f for f in set(out.split("\0")) if f and (REPO / f).is_file())
    return sorted(str(p.relative_to(REPO)) for p in REPO.rglob("*")
                  if p.is_file() and not set(p.relative_to(REPO).parts) & set(_JUNK)
                  and not any(part.endswith(".egg-info") for part in p.relative_to(REPO).parts))


@pytest.fixture(scope="module")
def install(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    # Build from a copy: an in-tree build writes build/ and *.egg-info, and others may build the checkout too.
    src = tmp / "src"
    files = _checkout_files()
    for f in files:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    # Junk a user could leave inside the asset folders: must not ship.
    for junk in ("examples/runs/smoke/data/part.jsonl", "examples/data/outputs/x.txt", "recipes/recipe/__pycache__/x.yaml"):
        (src / junk).parent.mkdir(parents=True, exist_ok=True)
        (src / junk).write_text("{}\n")
    dist = tmp / "dist"
    _sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(dist), str(src)])
    (wheel,) = dist.glob("kgov_train-*.whl")

    # A fresh venv with the wheel, non-editable. The test environment's site-packages comes in as a plain
    # path line of a .pth file: Python appends it to sys.path after the venv's own site-packages, and does
    # not run the .pth files inside it, so that environment's editable finder for kgov_train (the
    # __editable__*.pth) never loads. test_fresh_env_imports_the_wheel proves it.
    env = tmp / "env"
    _sh([sys.executable, "-m", "venv", "--without-pip", str(env)])
    py = env / "bin" / "python"
    _sh([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "--no-compile",
         "-q", str(wheel)])
    site = Path(_sh([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    deps = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])  # this environment's
    (site / "_kgov_test_deps.pth").write_text("".join(f"{d}\n" for d in deps), encoding="utf-8")

    work = tmp / "work"  # an empty folder outside the checkout: where a user runs kgov-train
    work.mkdir()
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join([str(env / "bin")] + [p for p in os.environ.get("PATH", "").split(os.pathsep)
                                                  if p and Path(p) != Path(venv_bin)])
    run_env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "KGOV_PII_SALT")}
    run_env.update(PATH=path, PYTHONNOUSERSITE="1", VIRTUAL_ENV=str(env))
    return {"tmp": tmp, "wheel": wheel, "files": files, "env": env, "py": py, "site": site, "work": work,
            "run_env": run_env, "kgov": str(env / "bin" / "kgov-train")}


def _kgov(install, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([install["kgov"], *args], cwd=install["work"], env=install["run_env"],
                         capture_output=True, text=True, timeout=600)
    if check:
        assert res.returncode == 0, f"kgov-train {' '.join(args)}\nstdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}"
    return res


def _manifest(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "manifest.json").read_text(encoding="utf-8"))


def test_wheel_ships_every_asset_and_no_junk(install):
    with zipfile.ZipFile(install["wheel"]) as z:
        names = set(z.namelist())
    shipped = {n.removeprefix("kgov_train/_assets/") for n in names if n.startswith("kgov_train/_assets/")}
    wanted = {f for f in install["files"] if f.split("/", 1)[0] in ASSET_DIRS}
    assert shipped == wanted  # every file of recipes/, slurm/, examples/ and nothing else (no runs/, caches)
    assert "kgov_train/_assets/recipes/recipe/smoke.yaml" in names
    assert "kgov_train/_assets/examples/data/ko-chatbot/LICENSE" in names
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"kgov_train", "data_prep"} and len(tops) == 3
    assert not [n for n in names if "__pycache__" in n or ".egg-info" in n or "/runs/" in n]


def test_fresh_env_imports_the_wheel(install):
    code = ("import json, sys, importlib.metadata as md, kgov_train, data_prep, kgov_train.assets as a\n"
            "d = md.distribution('kgov-train')\n"
            "print(json.dumps({'kgov_train': kgov_train.__file__, 'data_prep': data_prep.__file__,\n"
            "  'root': str(a.ROOT), 'recipes': str(a.RECIPES), 'slurm': str(a.SLURM), 'examples': str(a.EXAMPLES),\n"
            "  'direct_url': d.read_text('direct_url.json'), 'dist_files': str(d.locate_file('')),\n"
            "  'finders': [repr(f) for f in sys.meta_path], 'path': sys.path}))")
    got = json.loads(subprocess.run([str(install["py"]), "-c", code], cwd=install["work"], env=install["run_env"],
                                    capture_output=True, text=True, check=True, timeout=120).stdout)
    site = install["site"]
    assert Path(got["kgov_train"]).is_relative_to(site) and Path(got["data_prep"]).is_relative_to(site)
    assert Path(got["root"]) == site / "kgov_train" / "_assets"
    for key in ("recipes", "slurm", "examples"):
        assert Path(got[key]) == site / "kgov_train" / "_assets" / key
    assert Path(got["dist_files"]) == site
    assert '"editable"' not in (got["direct_url"] or "")  # installed from the wheel file
    assert not [f for f in got["finders"] if "editable" in f.lower()]  # the test env's editable finder is not loaded
    assert str(REPO) not in got["path"] and str(REPO / "kgov_train") not in got["path"]


def test_help_lists_the_shipped_recipes(install):
    out = _kgov(install, "--help").stdout
    recipes_line = next(line for line in out.splitlines() if line.startswith("Recipes here"))
    assert str(install["site"] / "kgov_train" / "_assets" / "recipes" / "recipe") in recipes_line
    assert "smoke" in recipes_line and "kgov_7b" in recipes_line
    assert str(REPO) not in out


def test_smoke_cpu_stages_run_from_any_folder(install):
    run = install["tmp"] / "run"
    _kgov(install, "recipe=smoke", f"run_dir={run}", "stages=[data,tokenizer,shards]")
    examples = install["site"] / "kgov_train" / "_assets" / "examples"
    for stage in ("data", "tokenizer", "shards"):
        assert _manifest(run / stage)["status"] == "complete", stage
    inputs = [e["path"] for e in _manifest(run / "data")["inputs"]]
    assert inputs and all(Path(p).is_relative_to(examples / "data" / "ko-gov-sample") for p in inputs)
    assert not (install["work"] / "runs").exists() and not (install["work"] / "outputs").exists()


@pytest.fixture(scope="module")
def my_recipes(install) -> Path:
    """A user's own recipe folder: recipe/<name>.yaml on top of a shipped recipe (model/, cluster/... may follow)."""
    mine = install["work"] / "my-recipes"
    (mine / "recipe").mkdir(parents=True)
    (mine / "recipe" / "mine.yaml").write_text(
        "# @package _global_\n"
        "# The shipped smoke recipe with my own name, a lower length floor and a smaller vocabulary.\n"
        "defaults:\n  - smoke\n  - _self_\n\n"
        "recipe_name: mine\n"
        "data:\n  min_chars: 100\n"
        "tokenizer:\n  vocab_size: 1500\n", encoding="utf-8")
    return mine


def test_own_recipe_folder_with_config_dir(install, my_recipes):
    # Without recipe=: the one-line error lists the user's recipes with the shipped ones.
    res = _kgov(install, "--config-dir", "my-recipes", check=False)
    assert res.returncode == 2 and "mine" in res.stderr and "smoke" in res.stderr, res.stderr
    # --config-dir relative to the working folder
    run = install["tmp"] / "run-mine"
    _kgov(install, "--config-dir", "my-recipes", "recipe=mine", f"run_dir={run}", "stages=[data]")
    m = _manifest(run / "data")
    assert m["status"] == "complete" and m["config"]["data"]["min_chars"] == 100
    assert all(Path(p).is_relative_to(install["site"]) for p in m["config"]["data"]["inputs"])
    # The same folder through hydra.searchpath
    job = _kgov(install, f"hydra.searchpath=[file://{my_recipes}]", "recipe=mine", "--cfg", "job").stdout
    assert "recipe_name: mine" in job and "vocab_size: 1500" in job


def test_own_recipe_folder_reaches_the_training_processes(install, my_recipes):
    # pretrain runs under torchrun: its processes get the overrides only, and find recipe=mine through
    # KGOV_CONFIG_DIR, which the parent sets from --config-dir.
    run = install["tmp"] / "run-mine-pretrain"
    _kgov(install, "--config-dir", "my-recipes", "recipe=mine", f"run_dir={run}",
          "stages=[data,tokenizer,shards,pretrain]", "pretrain.max_steps=2", "pretrain.save_steps=2")
    for stage in ("data", "tokenizer", "shards", "pretrain"):
        assert _manifest(run / stage)["status"] == "complete", stage
    assert _manifest(run / "tokenizer")["config"]["tokenizer"]["vocab_size"] == 1500


def test_submit_dry_run_points_at_the_install_not_the_checkout(install):
    out = _kgov(install, "submit", "recipe=smoke", "cluster=dev_slurm_cpu", "--dry-run").stdout
    assert "#SBATCH" in out and 'kgov-train "$@"' in out  # cpu.sbatch, from the wheel
    assert f"export KGOV_VENV={install['env']}" in out  # the job activates the submitter's environment
    assert f"export KGOV_WORKDIR={install['work']}" in out
    assert str(REPO) not in out
    assert "KGOV_REPO" not in out and "KGOV_CONFIG_DIR" not in out


def test_submit_dry_run_with_own_recipe_folder(install, my_recipes):
    out = _kgov(install, "submit", "--config-dir", "my-recipes", "recipe=mine", "cluster=dev_slurm_cpu",
                "stages=[data,pretrain]", "--dry-run").stdout
    # each job gets the folder back (its arguments are the overrides only)
    assert out.count(f"export KGOV_CONFIG_DIR={my_recipes}") == 2, out
    assert "train.sbatch" in out or "torchrun" in out
