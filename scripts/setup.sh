#!/usr/bin/env bash
# Create .venv and install rft-tui into it (CPU torch wheel first, so nothing pulls a CUDA build).
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh test,embeddings
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-embeddings}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first: the CPU build (2.13.0) here; on a CUDA box pip picks the matching CUDA wheel from PyPI.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[${extras}]"
if ! command -v bwrap >/dev/null 2>&1; then
  echo "note: python graders need bubblewrap for their sandbox: sudo apt-get install bubblewrap" >&2
fi
