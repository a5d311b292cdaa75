"""Faults with real processes: daemon kill -9 with a live worker, worker kill -9, cancel, pause/resume, FIFO."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

from daemon import api
from daemon.client import Client
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.jobs import job_request, make_files

S = api.JobStatus
SLOW_WORKER = {"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_FAKE_STEP_S": "0.1",
               "RFT_CANCEL_GRACE_S": "3"}


def metric_steps(home: Path, job_id: str) -> list[int]:
    conn = sqlite3.connect(str(home / "rft.db"), timeout=30)
    try:
        return [r[0] for r in conn.execute("SELECT step FROM metrics WHERE job_id = ? ORDER BY step", [job_id])]
    finally:
        conn.close()


def status_of(c: Client, job_id: str) -> S:
    return c.get_job(job_id).status


def test_daemon_kill9_worker_keeps_writing_and_is_readopted(daemon_factory, rft_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {**SLOW_WORKER, "RFT_FAKE_STEP_S": "0.25"}  # slow enough to outlive the daemon's restart
    d1: DaemonProcess = daemon_factory(env=env)
    with d1.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=60, eval_interval=10))
        wait_until(lambda: len(metric_steps(rft_home, job.id)) >= 3, 30, what="the worker's first steps")
        worker_pid = c.get_job(job.id).worker["pid"]
    d1.kill(signal.SIGKILL)
    # the daemon is gone; the worker goes on writing its steps
    before = len(metric_steps(rft_home, job.id))
    wait_until(lambda: len(metric_steps(rft_home, job.id)) >= before + 3, 30, what="steps while the daemon is dead")
    os.kill(worker_pid, 0)  # still alive
    d2: DaemonProcess = daemon_factory(env=env)
    with d2.client() as c:
        events = [e.message for e in c.list_events(job.id, limit=1000).data]
        assert any(f"re-adopted worker pid {worker_pid}" in m for m in events), events[:20]
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 60, what="job end")
        assert done.status is S.succeeded, done.error
    assert metric_steps(rft_home, job.id) == list(range(1, 61))  # none lost, none duplicated


def test_worker_kill9_fails_job_with_reason_and_next_job_starts(daemon_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d: DaemonProcess = daemon_factory(env=SLOW_WORKER)
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        first = c.create_job(job_request(train, valid, max_steps=200))
        second = c.create_job(job_request(train, valid, max_steps=3))
        running = wait_until(lambda: (j := c.get_job(first.id)).status is S.running and j.worker and j, 30,
                             what="first job running")
        assert status_of(c, second.id) is S.queued  # FIFO, one at a time
        os.kill(running.worker["pid"], signal.SIGKILL)
        failed = wait_until(lambda: (j := c.get_job(first.id)).status is S.failed and j, 30, what="failed")
        assert failed.error is not None and "SIGKILL" in failed.error.message
        assert failed.error.code in ("worker_failed", "out_of_memory")
        done = wait_until(lambda: (j := c.get_job(second.id)).status.is_terminal() and j, 60, what="second job")
        assert done.status is S.succeeded


def test_worker_crash_reports_exit_and_log_tail(daemon_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d: DaemonProcess = daemon_factory(env={**SLOW_WORKER, "RFT_WORKER_MODULE": "tests.support.no_such_module"})
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=3))
        failed = wait_until(lambda: (j := c.get_job(job.id)).status is S.failed and j, 30, what="failure")
        assert "exited with code 1" in failed.error.message
        assert "No module named" in failed.error.message  # the log's last line, so the user sees why


def test_cancel_running_job(daemon_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d: DaemonProcess = daemon_factory(env=SLOW_WORKER)
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=500))
        queued = c.create_job(job_request(train, valid, max_steps=500))
        wait_until(lambda: c.get_job(job.id).progress.step >= 2, 30, what="steps")
        c.cancel_job(job.id)
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 30, what="cancel")
        assert done.status is S.cancelled and done.finished_at
        c.cancel_job(queued.id)  # queued, or already started after the first one ended
        other = wait_until(lambda: (j := c.get_job(queued.id)).status.is_terminal() and j, 30, what="cancel 2")
        assert other.status is S.cancelled


def test_cancel_escalates_to_sigkill_when_worker_ignores_sigterm(daemon_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d: DaemonProcess = daemon_factory(env={**SLOW_WORKER, "RFT_WORKER_MODULE": "tests.support.stubborn_worker",
                                           "RFT_CANCEL_GRACE_S": "1"})
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=500))
        wait_until(lambda: c.get_job(job.id).progress.step >= 1, 30, what="steps")
        c.cancel_job(job.id)
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 30, what="kill")
        assert done.status is S.cancelled
        assert any("SIGKILL" in e.message for e in c.list_events(job.id, limit=100).data)


def test_pause_and_resume_keep_steps_continuous(daemon_factory, rft_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d: DaemonProcess = daemon_factory(env=SLOW_WORKER)
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=30, eval_interval=100))
        wait_until(lambda: c.get_job(job.id).progress.step >= 5, 30, what="steps")
        c.pause_job(job.id)
        paused = wait_until(lambda: (j := c.get_job(job.id)).status is S.paused and j, 30, what="paused")
        at = paused.progress.step
        assert c.list_checkpoints(job.id).data[0].step_number == at
        assert metric_steps(rft_home, job.id) == list(range(1, at + 1))
        c.resume_job(job.id)
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 60, what="end")
        assert done.status is S.succeeded
        assert any("Job resumed" in e.message for e in c.list_events(job.id, limit=200).data)
    assert metric_steps(rft_home, job.id) == list(range(1, 31))


def test_jobs_survive_daemon_restart_when_queued(daemon_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d1: DaemonProcess = daemon_factory(env=SLOW_WORKER)
    with d1.client() as c:
        train, valid = make_files(c, tmp_path)
        a = c.create_job(job_request(train, valid, max_steps=20))
        b = c.create_job(job_request(train, valid, max_steps=2))
        wait_until(lambda: status_of(c, a.id) is S.running, 30, what="running")
    d1.stop()
    d2: DaemonProcess = daemon_factory(env=SLOW_WORKER)
    with d2.client() as c:
        for job in (a, b):
            done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 60, what="end")
            assert done.status is S.succeeded


def test_dead_worker_while_daemon_down_resumes_from_checkpoint(daemon_factory, rft_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d1: DaemonProcess = daemon_factory(env=SLOW_WORKER)
    with d1.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=30, eval_interval=5))
        wait_until(lambda: c.list_checkpoints(job.id).data, 30, what="a checkpoint")
        pid = c.get_job(job.id).worker["pid"]
    d1.kill(signal.SIGKILL)
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: not _alive(pid), 10, what="worker death")
    d2: DaemonProcess = daemon_factory(env=SLOW_WORKER)
    with d2.client() as c:
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 60, what="end")
        assert done.status is S.succeeded
        assert any("resuming from step" in e.message for e in c.list_events(job.id, limit=300).data)
    assert metric_steps(rft_home, job.id) == list(range(1, 31))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
