#!/usr/bin/env bash
# The GPU checks of issue 14 in one go (docs/gpu.md "What remains for a GPU machine"); prints one JSON object.
# Needs .venv with the [gpu] extra (scripts/setup.sh gpu) installed beforehand; nothing is downloaded.
# Usage: scripts/gpu_check.sh [--steps 8] [--out gpu_check.json] [--skip demo,vllm,hf,oom,doctor]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=".venv/bin/python"
[ -x "$PY" ] || PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,memory.free,compute_cap,driver_version --format=csv >&2 || true
exec "$PY" tests/bench/gpu_check.py "$@"
