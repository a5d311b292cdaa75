"""The one place a job's worker command is decided (single process, or torchrun with N processes)."""

from __future__ import annotations

import os
import sys
from typing import Any

from daemon.store import loads

DEFAULT_WORKER_MODULE = "daemon.worker"


def worker_module() -> str:
    """`RFT_WORKER_MODULE` lets the foundation tests run a small worker that reports the same way."""
    return os.environ.get("RFT_WORKER_MODULE") or DEFAULT_WORKER_MODULE


def num_processes(job_row: dict[str, Any]) -> int:
    resolved = loads(job_row.get("resolved_hyperparameters")) or {}
    n = resolved.get("num_processes", 1)
    return n if isinstance(n, int) and n > 0 else 1


def worker_command(job_row: dict[str, Any]) -> list[str]:
    """`python -m daemon.worker JOB_ID`, or `torchrun --nproc_per_node N -m daemon.worker JOB_ID`."""
    job_id = job_row["id"]
    n = num_processes(job_row)
    if n == 1:
        return [sys.executable, "-m", worker_module(), job_id]
    return [sys.executable, "-m", "daemon.worker.torchrun", "--standalone", f"--nproc_per_node={n}",
            "-m", worker_module(), job_id]
