"""lm-evaluation-harness (lm-eval 0.4.x) on local task files only, hf backend, in this process.

Task folders (the project's examples/eval/tasks and every eval.task_dirs entry) are copied, YAML and Python files
only, into <stage_dir>/lm_eval_tasks/<n>-<folder>/ with the placeholder __TASK_DIR__ replaced by the source
folder's absolute path, so a task YAML points at its local data as

    dataset_path: json
    dataset_kwargs:
      data_files:
        test: __TASK_DIR__/my_task.jsonl

The TaskManager is built with include_defaults=False: only these folders are indexed, so a task name that is not
in them fails here instead of reaching for the Hugging Face Hub. Nothing is downloaded: the process runs with
kgov_train.offline.OFFLINE_ENV (HF_*_OFFLINE), which the CLI sets before anything is imported.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

PLACEHOLDER = "__TASK_DIR__"
_COPIED = (".yaml", ".yml", ".py", ".jinja", ".txt")


class HarnessError(RuntimeError):
    pass


def resolve_task_dirs(folders: list[Path], out_dir: Path) -> list[Path]:
    """Resolved copies of the task folders under out_dir (recreated), in order."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    resolved = []
    for n, folder in enumerate(folders):
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise HarnessError(f"{folder}: eval task folder missing (eval.task_dirs)")
        dest = out_dir / f"{n}-{folder.name}"
        for src in sorted(folder.rglob("*")):
            if not src.is_file() or src.suffix not in _COPIED or "__pycache__" in src.parts:
                continue
            target = dest / src.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.suffix in (".yaml", ".yml"):
                text = src.read_text(encoding="utf-8").replace(PLACEHOLDER, str(src.parent))
                target.write_text(text, encoding="utf-8")
            else:
                shutil.copyfile(src, target)
        dest.mkdir(parents=True, exist_ok=True)
        resolved.append(dest)
    return resolved


def task_data_files(folders: list[Path]) -> list[Path]:
    """Every file of the task folders (hashed into the eval manifest as inputs)."""
    files = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_dir():
            files += [p for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    return files


def task_manager(include: list[Path]):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(p) for p in include], include_defaults=False)


def run(model_dir: Path, tasks: list[str], manager, limit: int | None, batch_size: int, num_fewshot: int | None,
        device: str = "cpu", chat: bool = False) -> dict[str, Any]:
    """lm-eval's results (JSON-safe: results, n-samples, versions, n-shot, configs, higher_is_better) of the tasks,
    groups or tags named; chat: prompts go through the model's chat template (lm-eval's apply_chat_template)."""
    import lm_eval

    known = set(manager.all_tasks)
    missing = [t for t in tasks if t not in known]
    if missing:
        where = ", ".join(str(p) for p in getattr(manager, "include_path", None) or [])
        raise HarnessError(f"eval.tasks: {missing} not found in the local task folders "
                           f"({where}); built-in lm-eval tasks "
                           "download their data, so point eval.task_dirs at a local copy instead")
    res = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_dir), "dtype": "float32", "trust_remote_code": False},
        tasks=list(tasks), task_manager=manager, limit=limit, batch_size=batch_size, device=device,
        num_fewshot=num_fewshot, log_samples=False, bootstrap_iters=0, use_cache=None, apply_chat_template=chat,
        random_seed=0, numpy_random_seed=1234, torch_random_seed=1234, fewshot_random_seed=1234,
    )
    if res is None:
        raise HarnessError("lm_eval.simple_evaluate returned nothing (not the main process?)")
    raw = {k: res.get(k) for k in ("results", "n-samples", "versions", "n-shot", "configs", "higher_is_better")}
    return json.loads(json.dumps(raw, default=str))


def evaluate(model_dir: Path, tasks: list[str], manager, limit: int | None, batch_size: int,
             num_fewshot: int | None, device: str = "cpu") -> dict[str, Any]:
    """{"tasks": {name: {"acc", "acc_norm", "acc_stderr", "n"}}, "raw": lm-eval's results (JSON-safe)}."""
    raw = run(model_dir, tasks, manager, limit, batch_size, num_fewshot, device)
    out = {}
    for name in tasks:
        r = raw["results"].get(name, {})
        n = (raw.get("n-samples") or {}).get(name, {})
        out[name] = {"acc": _num(r.get("acc,none")), "acc_norm": _num(r.get("acc_norm,none")),
                     "acc_stderr": _num(r.get("acc_stderr,none")), "n": n.get("effective"),
                     "n_original": n.get("original")}
    return {"tasks": out, "raw": raw}


def _num(v: Any) -> float | None:
    if isinstance(v, (int, float)) and math.isfinite(v):
        return round(float(v), 6)
    return None
