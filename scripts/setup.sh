#!/usr/bin/env bash
# Bootstrap .venv at the repo root: torch first (the CPU wheel unless one is already
# installed), then kgov-train and its pinned dependencies. Fast no-op when up to date.
#
#   KGOV_TORCH_SPEC   torch requirement to install when the venv has none (default torch==2.13.0).
#                     On a GPU cluster install your CUDA torch into .venv first; it is kept.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
py="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating $venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
pip_install() { "$venv/bin/python" -m pip install --quiet "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }

# A bare `torch` dependency would make pip pull a multi-GB CUDA build: install the
# wanted build explicitly and never let the project's requirements choose it.
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "[setup] installing ${KGOV_TORCH_SPEC:-torch==2.13.0}"
  pip_install "${KGOV_TORCH_SPEC:-torch==2.13.0}"
fi

stamp="$venv/.kgov-installed"
want="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing kgov-train (editable) and its dependencies"
  pip_install -e "$repo[dev]"
  "$venv/bin/python" -c "import torch, deepspeed, transformers, trl, datatrove, sentencepiece, hydra" \
    || { echo "[setup] import check failed; see the pip output above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
