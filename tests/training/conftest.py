"""Training tests: real GRPO on the built-in model through a real daemon; the model is built once per machine."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon import api
from daemon.client import Client
from tests.support.daemon_proc import wait_until
from tests.support.jobs import ARITH, arith_example_job

# Small and fast: 4 prompts x 4 completions per step.
FAST_HP: dict[str, Any] = {"batch_size": 4, "num_generations": 4, "eval_samples": 8, "max_steps": 4, "eval_interval": 2}


@pytest.fixture(autouse=True)
def _use_model_cache(model_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RFT_MODEL_CACHE", str(model_cache))


@pytest.fixture
def arith_grader() -> dict[str, Any]:
    return json.loads((ARITH / "grader.json").read_text())


@pytest.fixture
def start_job(daemon: Any, arith_grader: dict[str, Any]) -> Callable[..., api.FineTuningJob]:
    """Create a job on the arithmetic examples with FAST_HP overridden by keyword arguments."""

    def start(grader: dict[str, Any] | None = None, **hp: Any) -> api.FineTuningJob:
        return arith_example_job(daemon.client(), {**FAST_HP, **hp}, grader or arith_grader)

    return start


def wait_status(client: Client, job_id: str, statuses: set[api.JobStatus], timeout: float = 240) -> api.FineTuningJob:
    return wait_until(lambda: (lambda j: j if j.status in statuses else None)(client.get_job(job_id)),
                      timeout=timeout, interval=0.2, what=f"job {job_id} to reach {sorted(s.value for s in statuses)}")


def wait_step(client: Client, job_id: str, step: int, timeout: float = 240) -> api.FineTuningJob:
    def reached() -> api.FineTuningJob | None:
        j = client.get_job(job_id)
        if j.status.is_terminal():
            raise AssertionError(f"job ended ({j.status.value}) before step {step}: {j.error}")
        return j if j.progress.step >= step else None

    return wait_until(reached, timeout=timeout, interval=0.2, what=f"job {job_id} to reach step {step}")


def worker_log(home: Path, job_id: str) -> str:
    p = home / "jobs" / job_id / "worker.log"
    return p.read_text(errors="replace")[-3000:] if p.exists() else "(no log)"
