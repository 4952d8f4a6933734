#!/usr/bin/env bash
# Fresh machine to a chat model: bootstrap .venv, run the smoke recipe end to end
# (data -> tokenizer -> shards -> pretrain -> sft -> dpo), then chat with dpo/final.
# Extra arguments are Hydra overrides, e.g.  scripts/demo.sh run_dir=runs/demo2 force=true
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
source .venv/bin/activate
run_dir="runs/smoke"
for a in "$@"; do case "$a" in run_dir=*) run_dir="${a#run_dir=}";; esac; done
start=$(date +%s)
kgov-train recipe=smoke "$@"
echo "[demo] smoke chain finished in $(( $(date +%s) - start ))s; run folder: $run_dir"
python scripts/chat.py "$run_dir/dpo/final" "공무원 육아휴직은 어떻게 신청하나요?"
