#!/usr/bin/env bash
# Fresh machine -> the test suite: system packages (tmux, for the end-to-end TUI test; bubblewrap, the python
# grader sandbox), .venv, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=""
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $missing >/dev/null
fi
scripts/setup.sh test,embeddings
export RFT_DEVICE=cpu
exec .venv/bin/python -m pytest -q "$@"
