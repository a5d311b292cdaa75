"""What the Ray and Slurm tests share: a TCP daemon, a job on the arithmetic examples, waiting on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon import api
from daemon.client import Client
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.engines import free_port
from tests.support.jobs import arith_example_job

# few, small steps: 4 prompts x 4 completions, over 2 CPU processes (torchrun, gloo)
CLUSTER_HP: dict[str, Any] = {"batch_size": 4, "num_generations": 4, "eval_samples": 8, "max_steps": 6,
                              "eval_interval": 3}
S = api.JobStatus


def tcp_daemon(daemon_factory: Any, model_cache: Path, port: int | None = None,
               env: dict[str, str] | None = None) -> DaemonProcess:
    """A daemon on TCP (cluster workers report there) that asks the engines twice a second."""
    port = port or free_port()
    d: DaemonProcess = daemon_factory(env={"RFT_MODEL_CACHE": str(model_cache), "RFT_CLUSTER_POLL_S": "0.5",
                                           **(env or {})}, tcp=f"127.0.0.1:{port}")
    return d


def create_cluster_job(c: Client, cluster: str, **hp: Any) -> api.FineTuningJob:
    return arith_example_job(c, {**CLUSTER_HP, **hp}, cluster=cluster)


def job_log(c: Client, job_id: str) -> str:
    return "\n".join(c.job_log(job_id, lines=5000).lines)


def wait_job(c: Client, job_id: str, pred: Any, what: str, timeout: float = 300) -> api.FineTuningJob:
    def check() -> api.FineTuningJob | None:
        job = c.get_job(job_id)
        if pred(job):
            return job
        if job.status.is_terminal():
            raise AssertionError(f"job {job_id} ended {job.status.value} ({job.error}) before {what}:\n"
                                 + job_log(c, job_id)[-4000:])
        return None

    return wait_until(check, timeout=timeout, interval=0.25, what=f"job {job_id}: {what}")


def wait_terminal(c: Client, job_id: str, timeout: float = 200, why: Any = None) -> api.FineTuningJob:
    """The job once it ended; else an AssertionError with its state, events and log (and `why()`'s text: the
    engine's side), within pytest-timeout's 300 s per test, which would say nothing."""
    try:
        return wait_until(lambda: (lambda j: j if j.status.is_terminal() else None)(c.get_job(job_id)),
                          timeout=timeout, interval=0.25, what=f"job {job_id} to end")
    except TimeoutError as e:
        job = c.get_job(job_id)
        events = [f"{ev.level}: {ev.message}" for ev in c.list_events(job_id, limit=30).data]
        extra = why() if why is not None else ""
        raise AssertionError(f"{e}: {job.status.value}, step {job.progress.step}, cluster {job.cluster}\n"
                             + "\n".join(events) + f"\n--- job log\n{job_log(c, job_id)[-6000:]}\n{extra}") from None


def metric_steps(c: Client, job_id: str) -> list[int]:
    return [m.step for m in c.metrics(job_id).data]
