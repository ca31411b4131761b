#!/usr/bin/env bash
# Create .venv and install recsys with the extras the demo and the tests need. Idempotent.
# TORCH_SPEC overrides the torch requirement (default: the CPU build 2.13.0, on local disk on our CI machines;
# on a machine with internet pip fetches it from PyPI; set TORCH_SPEC=torch for the newest, GPU builds included).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" 2>&1 | grep -v "^WARNING: Location" || true
fi
python -m pip install -q -e ".[ials,onnx,ray,serve,test${RECSYS_EXTRAS:+,$RECSYS_EXTRAS}]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import recsys, torch, faiss, sentence_transformers, polars; print('recsys', recsys.__version__, '| torch', torch.__version__, '| faiss', faiss.__version__)"
