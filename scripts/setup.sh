#!/usr/bin/env bash
# Create .venv and install rft-tui into it (CPU torch wheel first, so nothing pulls a CUDA build).
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh test,embeddings
#        scripts/setup.sh gpu          the GPU stack too: the [gpu] extra (vLLM, bitsandbytes) in the same .venv
#                                      (docs/gpu.md gives the reason for every pin); then `pip check`
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-embeddings}"
gpu=""
if [ "$extras" = "gpu" ]; then
  gpu=1
  extras="gpu,embeddings"
  # vLLM brings CUDA builds of torchvision/torchaudio; beside torch's CPU wheel they break `from trl import
  # GRPOTrainer` (docs/gpu.md), and this is the one environment: on a machine without a GPU, stop here.
  if ! command -v nvidia-smi >/dev/null 2>&1 && [ -z "${RFT_GPU_SETUP_FORCE:-}" ]; then
    echo "scripts/setup.sh gpu is for a machine with an NVIDIA GPU (no nvidia-smi here); the CPU set is:" \
         "scripts/setup.sh (RFT_GPU_SETUP_FORCE=1 to install the GPU stack anyway)" >&2
    exit 2
  fi
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
  .venv/bin/python -m pip check
  echo "GPU stack installed in .venv (the [gpu] extra); check the machine with: .venv/bin/rft-tui doctor"
fi
