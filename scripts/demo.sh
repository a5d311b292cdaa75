#!/usr/bin/env bash
# Fresh machine -> the demo: set up .venv, build the built-in model, fine-tune it on 2-digit addition.
# Extra arguments go to `rft-tui demo` (e.g. --no-tui; --task tools for the agent-RFT demo with an add tool).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh embeddings
exec .venv/bin/rft-tui demo "$@"
