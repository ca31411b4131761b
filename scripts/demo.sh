#!/usr/bin/env bash
# Set up, then run the main job end to end on the built-in demo data (pipelines/demo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
recsys run pipelines/demo.toml "$@"
