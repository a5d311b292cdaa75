"""Pause at any moment of a real job's life (start-up, base validation, training) and resume it to the end."""

from __future__ import annotations

import time

import pytest

from daemon import api
from tests.training.conftest import wait_status, worker_log

S = api.JobStatus
TERMINAL = {S.succeeded, S.failed, S.cancelled}
PAUSE_AFTER_S = (0.5, 1.0, 3.0, 10.0)  # after create, then after each resume
STEPS = 300  # 0.05 s (idle) to 0.3 s (busy 2-core box) each: the 10 s pause lands mid-training, not after the end


@pytest.mark.slow
def test_pause_at_any_moment_ends_paused_and_resumes_to_success(daemon, start_job, rft_home, capsys):
    c = daemon.client()
    job = start_job(max_steps=STEPS, eval_interval=STEPS // 2)
    since = time.monotonic()
    timings = []
    for delay in PAUSE_AFTER_S:
        # the moment of the pause is what is under test, so this waits for a time, not for a state
        time.sleep(max(0.0, since + delay - time.monotonic()))
        asked = time.monotonic()
        answer = c.pause_job(job.id)
        assert answer.status in (S.running, S.paused), answer.status
        paused = wait_status(c, job.id, {S.paused} | TERMINAL, timeout=120)
        assert paused.status is S.paused, f"pause {delay} s in: {paused.error}\n{worker_log(rft_home, job.id)}"
        timings.append((delay, round(time.monotonic() - asked, 1), paused.progress.step))
        c.resume_job(job.id)
        since = time.monotonic()
    done = wait_status(c, job.id, TERMINAL)
    assert done.status is S.succeeded, worker_log(rft_home, job.id)
    metrics = c.metrics(job.id).data
    assert [m.step for m in metrics] == list(range(1, STEPS + 1))
    steps = c.validation(job.id).steps
    assert steps[0] == 0 and steps.count(0) == 1 and steps[-1] == STEPS
    # the stored learning rate is the scheduler's (linear decay, no warm-up), continuous across resumes
    lr0 = done.resolved_hyperparameters.learning_rate
    for m in metrics:
        assert m.values["learning_rate"] == pytest.approx(lr0 * (1 - (m.step - 1) / STEPS), rel=1e-6), m.step
    messages = [e.message for e in c.list_events(job.id, limit=500).data]
    assert not any("SIGUSR1" in m or m.startswith("Step ") for m in messages), messages
    log = (rft_home / "jobs" / job.id / "worker.log").read_text(errors="replace")  # every attempt's lines
    assert "FutureWarning" not in log and "UserWarning" not in log, log
    assert log.count("before training started") >= 1, log
    with capsys.disabled():
        print(f"\npause after (s), pause took (s), step at pause: {timings}")
