#!/usr/bin/env bash
# Create .venv and install rft-tui into it (CPU torch wheel first, so nothing pulls a CUDA build).
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh test,embeddings
#        scripts/setup.sh gpu          also makes .venv-gpu: the GPU worker set (requirements/gpu.txt: vLLM,
#                                      bitsandbytes), beside .venv because vLLM pins a fastapi the daemon can't use
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-embeddings}"
gpu=""
if [ "$extras" = "gpu" ]; then
  gpu=1
  extras="embeddings"
fi
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

if [ -n "$gpu" ]; then
  # The worker's environment: CUDA torch from PyPI (its Linux wheel is the CUDA build), vLLM, bitsandbytes.
  if [ ! -x .venv-gpu/bin/python ]; then
    "$PY" -m venv .venv-gpu
  fi
  .venv-gpu/bin/python -m pip install --quiet --upgrade pip
  .venv-gpu/bin/python -m pip install --quiet -r requirements/gpu.txt
  # the checkout on the worker environment's path (no second install of rft-tui and its fastapi pin)
  site="$(.venv-gpu/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  pwd > "$site/rft_tui_checkout.pth"
  .venv-gpu/bin/python -m pip check
  echo "GPU worker environment ready: .venv-gpu (the daemon uses it for workers; check with: rft-tui doctor)"
fi
