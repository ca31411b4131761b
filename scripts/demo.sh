#!/usr/bin/env bash
# Set up, then run the main job end to end on the built-in demo data (pipelines/demo.toml): the retriever, the learned
# ranker on top of it, and what the ranker adds over retrieval alone (printed by the evaluate stage).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
start=$SECONDS
recsys run pipelines/demo.toml "$@"
echo "demo: done in $((SECONDS - start)) s"
