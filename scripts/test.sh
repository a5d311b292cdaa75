#!/usr/bin/env bash
# Fresh machine -> the test suite: system packages (tmux, for the end-to-end TUI test), .venv, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v tmux >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq tmux >/dev/null
fi
scripts/setup.sh test,embeddings
export RFT_DEVICE=cpu
exec .venv/bin/python -m pytest -q "$@"
