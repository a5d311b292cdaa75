"""Out-of-memory that explains itself: the real worker, the real trainer, a real torch.OutOfMemoryError raised
from a hook at each phase (tests/support/oom_worker.py), through a real daemon.

Each job fails with code `out_of_memory` and a message naming the step, the phase, the peak memory, the
estimate and a suggestion; the event carries them as data. `on_oom: "retry_smaller"` retries once from the
last checkpoint with half the micro-batch and then succeeds; with several processes (torchrun) the daemon
relaunches the job once from its last checkpoint, smaller, and it succeeds too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon import api
from daemon.store import failure_replaces
from tests.support.daemon_proc import DaemonProcess
from tests.support.jobs import arith_example_job
from tests.training.conftest import wait_status

HP: dict[str, Any] = {"batch_size": 2, "num_generations": 4, "eval_samples": 4, "max_steps": 3, "eval_interval": 2}
DONE = {api.JobStatus.succeeded, api.JobStatus.failed, api.JobStatus.cancelled}


@pytest.fixture
def oom_daemon(daemon_factory: Any, model_cache: Path) -> DaemonProcess:
    return daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.oom_worker", "RFT_MODEL_CACHE": str(model_cache)})


def create(d: DaemonProcess, metadata: dict[str, str], **hp: Any) -> api.FineTuningJob:
    return arith_example_job(d.client(), {**HP, **hp}, metadata=metadata)


def oom_event(d: DaemonProcess, job_id: str, retry: bool = False) -> dict[str, Any]:
    for e in d.client().list_events(job_id, limit=100).data:
        data = e.data or {}
        if "out_of_memory" in data and bool(data.get("retry")) == retry:
            return dict(data["out_of_memory"])
    raise AssertionError(f"no out-of-memory event (retry={retry}) for {job_id}")


@pytest.mark.slow
def test_out_of_memory_at_each_phase_fails_with_the_explanation(oom_daemon: DaemonProcess) -> None:
    c = oom_daemon.client()
    cases = {"generation": 2, "forward": 1, "backward": 2, "validation": 2}
    jobs = {phase: create(oom_daemon, {"oom_phase": phase, "oom_step": str(step)}) for phase, step in cases.items()}
    for phase, job in jobs.items():
        done = wait_status(c, job.id, DONE, timeout=600)
        assert done.status is api.JobStatus.failed and done.error is not None, (phase, done.error)
        assert done.error.code == "out_of_memory"
        message = done.error.message
        assert message.startswith(f"out of memory at step {cases[phase]} during {phase}: peak "), message
        assert "GiB on cpu" in message and "the estimate was" in message and "Suggestion: " in message
        report = oom_event(oom_daemon, job.id)
        assert (report["phase"], report["step"], report["device"]) == (phase, cases[phase], "cpu")
        assert report["peak_bytes"] > 50 * 2**20 and report["estimate_total_bytes"] > 0 and report["suggestion"]
    forward = c.get_job(jobs["forward"].id).error
    assert forward is not None and "gradient_accumulation_steps to 2" in forward.message
    assert "retry_smaller" in forward.message


@pytest.mark.slow
def test_retry_smaller_resumes_with_half_the_micro_batch(oom_daemon: DaemonProcess) -> None:
    c = oom_daemon.client()
    job = create(oom_daemon, {"oom_phase": "backward", "oom_step": "3", "oom_times": "1"}, on_oom="retry_smaller")
    done = wait_status(c, job.id, DONE, timeout=600)
    assert done.status is api.JobStatus.succeeded, done.error
    report = oom_event(oom_daemon, job.id, retry=True)
    assert (report["phase"], report["step"], report["micro_batch"]) == ("backward", 3, 8)
    retried = [e.message for e in c.list_events(job.id, limit=100).data if "Retrying once" in e.message]
    assert retried and "checkpoint of step 2" in retried[0] and "4 completions" in retried[0]
    assert c.get_job(job.id).progress.step == 3  # the global batch and the step count stayed the same


@pytest.mark.slow
def test_retry_smaller_relaunches_a_two_process_job_from_its_checkpoint(oom_daemon: DaemonProcess) -> None:
    """Rank 1 runs out at step 3's backward while its micro-batch is 4; the daemon relaunches torchrun once from
    the step-2 checkpoint with micro-batch 2 x accumulation 2 (same global batch), and the job finishes."""
    c = oom_daemon.client()
    job = create(oom_daemon, {"oom_phase": "backward", "oom_step": "3", "oom_rank": "1",
                              "oom_min_micro_batch": "4"}, on_oom="retry_smaller", num_processes=2)
    done = wait_status(c, job.id, DONE, timeout=900)
    assert done.status is api.JobStatus.succeeded, (done.error, log_of(oom_daemon, job.id))
    events = list(reversed(c.list_events(job.id, limit=200).data))  # oldest first
    failed = [e for e in events if (e.data or {}).get("out_of_memory")]
    assert len(failed) == 1 and failed[0].data is not None and failed[0].data["rank"] == 1
    report = failed[0].data["out_of_memory"]
    assert (report["phase"], report["step"], report["micro_batch"], report["retried"]) == ("backward", 3, 4, False)
    relaunch = [e.message for e in events if "Relaunching the 2 processes once" in e.message]
    assert relaunch and relaunch[0].startswith("out of memory at step 3 during backward")
    assert "from the checkpoint of step 2 with half the per-device batch" in relaunch[0]
    started = [e.message for e in events if e.message.startswith("Training builtin:tiny-arith")]
    assert len(started) == 2 and "micro-batch 4 x 1" in started[0] and "micro-batch 2 x 2" in started[1]
    assert "resuming from" in started[1] and "step-2" in started[1]
    assert [m.step for m in c.metrics(job.id).data] == [1, 2, 3]  # steps continue; the global batch stayed
    assert c.get_job(job.id).progress.step == 3


def log_of(d: DaemonProcess, job_id: str) -> str:
    path = d.paths.job_log(job_id)
    return path.read_text()[-4000:] if path.exists() else "(no worker log)"


def test_a_ranks_out_of_memory_failure_is_the_one_the_job_keeps() -> None:
    """The ranks of one attempt all finish: the first failure stands, except that the out-of-memory error that
    broke the others' collective replaces their failure; nothing replaces a failure with a non-failure."""
    oom = "out of memory at step 3 during backward: peak 1.00 GiB on cpu"
    broken = "DistBackendError: Connection closed by peer"
    assert failure_replaces(None, "failed", broken) and failure_replaces(("succeeded", None), "failed", broken)
    assert failure_replaces(("failed", broken), "failed", oom)
    assert not failure_replaces(("failed", oom), "failed", broken)
    assert not failure_replaces(("failed", broken), "failed", "RuntimeError: later")
    assert not failure_replaces(("failed", oom), "cancelled", None)
    assert not failure_replaces(("failed", oom), "failed", oom + " (again)")
