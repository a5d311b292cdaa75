#!/usr/bin/env bash
# Fresh machine -> the test suite: system packages (tmux, for the end-to-end TUI test; bubblewrap, the python
# grader sandbox; OpenSSH client and server, for the --ssh test against a real sshd on loopback; Slurm and
# munge, for the cluster tests' one-node Slurm), .venv (with the [ray] extra: the cluster tests' Ray head; [s3]:
# s3fs, for URL storage, tested against moto's S3 server from the test extra), the
# static checks (ruff, mypy: configured in pyproject.toml), pytest.
# Arguments go to pytest instead, e.g. `scripts/test.sh -m "not slow" -n 2` (the fast loop) or `scripts/test.sh tests/tui`.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=""
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v ssh-keygen >/dev/null 2>&1 || missing="$missing openssh-client"
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
[ -x /usr/sbin/slurmctld ] || missing="$missing slurm-wlm"
[ -x /usr/sbin/munged ] || missing="$missing munge"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
scripts/setup.sh test,embeddings,ray,s3
echo "ruff: $(.venv/bin/ruff --version)" >&2
.venv/bin/ruff check .
echo "mypy: $(.venv/bin/mypy --version)" >&2
.venv/bin/mypy
export RFT_DEVICE=cpu
export RFT_REQUIRE_CLUSTER_ENGINES=1  # tests/clusters: a missing Ray or Slurm fails here instead of skipping
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest -q "$@"
fi
# The whole suite in two passes: the fast loop (tests under a second each; about 2 min on 2 cores), then the
# `slow` tests one at a time (a second or more each: real training on every core, real engines, daemon restarts,
# TUI journeys and snapshots). RFT_TEST_WORKERS=N runs the fast pass in N processes (pytest-xdist; each test has
# its own RFT_HOME, daemon and ports).
rc=0
.venv/bin/python -m pytest -q -m "not slow" -n "${RFT_TEST_WORKERS:-0}" || rc=$?
.venv/bin/python -m pytest -q -m slow || rc=$?
exit "$rc"
