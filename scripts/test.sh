#!/usr/bin/env bash
# Bootstrap .venv and run the test suite. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
exec .venv/bin/python -m pytest -ra --durations=20 "$@"
