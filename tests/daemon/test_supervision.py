"""Faults with real processes: daemon kill -9 with a live worker, worker kill -9, cancel, pause/resume, FIFO."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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


@pytest.mark.slow
def test_daemon_kill9_worker_keeps_writing_and_is_readopted(daemon_factory, rft_home: Path, tmp_path: Path) -> None:
    gate = tmp_path / "hold-gate"  # the worker holds before step 25 until the next daemon has re-adopted it
    env = {**SLOW_WORKER, "RFT_FAKE_HOLD_AT_STEP": "25", "RFT_FAKE_HOLD_GATE": str(gate)}
    d1: DaemonProcess = daemon_factory(env=env)
    with d1.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=30, eval_interval=10))
        wait_until(lambda: len(metric_steps(rft_home, job.id)) >= 3, 30, what="the worker's first steps")
        worker = c.get_job(job.id).worker
        assert worker is not None
        worker_pid = worker["pid"]
    d1.kill(signal.SIGKILL)
    # the daemon is gone; the worker goes on writing its steps
    before = len(metric_steps(rft_home, job.id))
    wait_until(lambda: len(metric_steps(rft_home, job.id)) >= before + 3, 30, what="steps while the daemon is dead")
    os.kill(worker_pid, 0)  # still alive
    d2: DaemonProcess = daemon_factory(env=env)
    with d2.client() as c:
        events = [e.message for e in c.list_events(job.id, limit=1000).data]
        assert any(f"re-adopted worker pid {worker_pid}" in m for m in events), events[:20]
        gate.touch()
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 60, what="job end")
        assert done.status is S.succeeded, done.error
    assert metric_steps(rft_home, job.id) == list(range(1, 31))  # none lost, none duplicated


@pytest.mark.slow
def test_worker_kill9_fails_job_with_reason_and_next_job_starts(daemon_factory, tmp_path: Path) -> None:
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


@pytest.mark.slow
def test_worker_crash_reports_exit_and_log_tail(daemon_factory, tmp_path: Path) -> None:
    d: DaemonProcess = daemon_factory(env={**SLOW_WORKER, "RFT_WORKER_MODULE": "tests.support.no_such_module"})
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=3))
        failed = wait_until(lambda: (j := c.get_job(job.id)).status is S.failed and j, 30, what="failure")
        assert "exited with code 1" in failed.error.message
        assert "No module named" in failed.error.message  # the log's last line, so the user sees why


@pytest.mark.slow
def test_cancel_running_job(daemon_factory, tmp_path: Path) -> None:
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


@pytest.mark.slow
def test_cancel_escalates_to_sigkill_when_worker_ignores_sigterm(daemon_factory, tmp_path: Path) -> None:
    d: DaemonProcess = daemon_factory(env={**SLOW_WORKER, "RFT_WORKER_MODULE": "tests.support.stubborn_worker",
                                           "RFT_CANCEL_GRACE_S": "1"})
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=500))
        wait_until(lambda: c.get_job(job.id).progress.step >= 1, 30, what="steps")
        c.cancel_job(job.id)
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 30, what="kill")
        assert done.status is S.cancelled  # at once; the worker's teardown goes on behind it
        wait_until(lambda: c.get_job(job.id).worker is None, 30, what="the worker to be gone")
        messages = [e.message for e in c.list_events(job.id, limit=100).data]
        assert any("SIGKILL" in m for m in messages) and any("killed by SIGKILL" in m for m in messages), messages


@pytest.mark.slow
def test_pause_and_resume_keep_steps_continuous(daemon_factory, rft_home: Path, tmp_path: Path) -> None:
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


@pytest.mark.slow
def test_jobs_survive_daemon_restart_when_queued(daemon_factory, tmp_path: Path) -> None:
    d1: DaemonProcess = daemon_factory(env=SLOW_WORKER)
    with d1.client() as c:
        train, valid = make_files(c, tmp_path)
        a = c.create_job(job_request(train, valid, max_steps=20))
        b = c.create_job(job_request(train, valid, max_steps=2))
        wait_until(lambda: status_of(c, a.id) is S.running, 30, what="running")
    d1.stop()
    d2: DaemonProcess = daemon_factory(env=SLOW_WORKER)
    with d2.client() as c:
        for job_id in (a.id, b.id):
            done = wait_until(lambda job_id=job_id: (j := c.get_job(job_id)).status.is_terminal() and j, 60,
                              what="end")
            assert done.status is S.succeeded


@pytest.mark.slow
def test_dead_worker_while_daemon_down_resumes_from_checkpoint(daemon_factory, rft_home: Path, tmp_path: Path) -> None:
    d1: DaemonProcess = daemon_factory(env=SLOW_WORKER)
    with d1.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=30, eval_interval=5))
        wait_until(lambda: c.list_checkpoints(job.id).data, 30, what="a checkpoint")
        worker = c.get_job(job.id).worker
        assert worker is not None
        pid = worker["pid"]
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


# ------------------------------------------------------------------ issue 10: control at any moment


@pytest.mark.slow
def test_pause_while_the_worker_starts_up_ends_paused_and_resumes(daemon_factory, rft_home: Path,
                                                                   tmp_path: Path) -> None:
    """A pause before the worker has its signal handler (it is still importing) pauses; it never kills."""
    d: DaemonProcess = daemon_factory(env={**SLOW_WORKER, "RFT_FAKE_STARTUP_S": "1.5"})
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=8, eval_interval=4))
        for _ in range(2):  # right after create, then right after resume
            assert c.get_job(job.id).status is S.running  # the worker was spawned by the request itself
            c.pause_job(job.id)
            paused = wait_until(lambda: (j := c.get_job(job.id)).status is not S.running and j, 30, what="pause")
            assert paused.status is S.paused, paused.error
            c.resume_job(job.id)
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 60, what="end")
        assert done.status is S.succeeded, done.error
        messages = [e.message for e in c.list_events(job.id, limit=500).data]
        assert not any("SIGUSR1" in m for m in messages), messages
        assert sum("paused before training started" in m for m in messages) == 2, messages
    assert metric_steps(rft_home, job.id) == list(range(1, 9))


@pytest.mark.slow
def test_failure_quotes_its_own_attempts_log_and_the_daemon_log_records_it(daemon_factory, tmp_path: Path) -> None:
    """Attempt 2 dies silently: its error must not quote attempt 1's log; the daemon log has every transition."""
    d: DaemonProcess = daemon_factory(env={**SLOW_WORKER, "RFT_FAKE_CRASH_ON_ATTEMPT": "2"})
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=200, eval_interval=100))
        wait_until(lambda: c.get_job(job.id).progress.step >= 3, 30, what="steps")
        c.pause_job(job.id)
        wait_until(lambda: c.get_job(job.id).status is S.paused, 30, what="paused")
        c.resume_job(job.id)
        failed = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 30, what="failure")
        assert failed.status is S.failed and failed.error is not None
        assert "exited with code 3" in failed.error.message
        assert "fake worker" not in failed.error.message, failed.error.message  # attempt 1's only line
        events = c.list_events(job.id, limit=500).data
        assert not any(e.message.startswith("Step ") for e in events)  # progress is in metrics, not events
        assert len(events) < 30, [e.message for e in events]
    d.stop()
    log = d.log()
    for line in (f"job {job.id}: validating_files -> queued", f"job {job.id}: queued -> running",
                 f"job {job.id}: running -> paused", f"job {job.id}: paused -> queued",
                 f"job {job.id}: running -> failed", "exited (exit code 3)", "started on", "stopping"):
        assert line in log, f"{line!r} not in the daemon log:\n{log[-3000:]}"
    assert "ERROR rft.scheduler: job " + job.id in log


@pytest.mark.slow
def test_cancel_answers_cancelled_to_the_openai_sdk_and_the_job_stays_cancelled(daemon_factory, rft_home: Path,
                                                                                tmp_path: Path) -> None:
    """OpenAI answers cancel with the job `cancelled`; teardown (here: SIGTERM ignored, SIGKILL) is internal."""
    import httpx
    import openai

    d: DaemonProcess = daemon_factory(env={**SLOW_WORKER, "RFT_WORKER_MODULE": "tests.support.stubborn_worker",
                                           "RFT_CANCEL_GRACE_S": "2"})
    # openai types http_client as its vendored httpx2.Client; an httpx.Client does the same job at run time
    sdk = openai.OpenAI(base_url="http://rft-daemon/v1", api_key="local", max_retries=0,
                        http_client=httpx.Client(transport=httpx.HTTPTransport(uds=d.socket)))  # type: ignore[arg-type]
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        first = c.create_job(job_request(train, valid, max_steps=500))
        second = c.create_job(job_request(train, valid, max_steps=500))
        running = wait_until(lambda: (j := c.get_job(first.id)).progress.step >= 1 and j, 30, what="steps")
        pid = running.worker["pid"]
        answer = sdk.fine_tuning.jobs.cancel(first.id)
        assert answer.id == first.id and answer.status == "cancelled"
        assert sdk.fine_tuning.jobs.retrieve(first.id).status == "cancelled"
        # the worker ignores SIGTERM and goes on writing steps: the job stays cancelled, and the next job
        # waits for the GPU set until the worker is gone
        at_cancel = len(metric_steps(rft_home, first.id))
        wait_until(lambda: len(metric_steps(rft_home, first.id)) > at_cancel, 10, what="a late step")
        assert c.get_job(first.id).status is S.cancelled and c.get_job(second.id).status is S.queued
        wait_until(lambda: c.get_job(second.id).status is S.running, 30, what="the next job")
        assert not _alive(pid)
        final = sdk.fine_tuning.jobs.retrieve(first.id)
        assert final.status == "cancelled" and final.fine_tuned_model is None and final.finished_at
        messages = [e.message for e in c.list_events(first.id, limit=200).data]
        assert any(f"Worker pid {pid} stopped" in m for m in messages), messages
        assert c.get_job(first.id).worker is None
        assert sdk.fine_tuning.jobs.cancel(second.id).status == "cancelled"  # a job that runs, too


@pytest.mark.slow
def test_a_cancelled_jobs_worker_is_stopped_by_the_next_daemon(daemon_factory, tmp_path: Path) -> None:
    """The daemon dies while a cancelled job's worker ignores SIGTERM: the next daemon finishes the teardown."""
    env = {**SLOW_WORKER, "RFT_WORKER_MODULE": "tests.support.stubborn_worker", "RFT_CANCEL_GRACE_S": "600"}
    d1: DaemonProcess = daemon_factory(env=env)
    with d1.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=500))
        nxt = c.create_job(job_request(train, valid, max_steps=500))
        pid = wait_until(lambda: (j := c.get_job(job.id)).progress.step >= 1 and j, 30, what="steps").worker["pid"]
        assert c.cancel_job(job.id).status is S.cancelled
    d1.kill(signal.SIGKILL)
    assert _alive(pid)  # it ignored SIGTERM, and nobody escalated
    d2: DaemonProcess = daemon_factory(env={**env, "RFT_CANCEL_GRACE_S": "1"})
    with d2.client() as c:
        wait_until(lambda: c.get_job(job.id).worker is None, 30, what="the old worker to be stopped")
        assert not _alive(pid) and c.get_job(job.id).status is S.cancelled
        wait_until(lambda: c.get_job(nxt.id).status is S.running, 30, what="the next job")


HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()  # hold until the test says so (EOF when the test is gone)
conn.execute("COMMIT")
"""


def worker_outcome(home: Path, job_id: str) -> str | None:
    conn = sqlite3.connect(str(home / "rft.db"), timeout=30)
    try:
        row = conn.execute("SELECT worker_outcome FROM jobs WHERE id = ?", [job_id]).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


@pytest.mark.parametrize("how", ["exits", "is killed"])
@pytest.mark.slow
def test_a_worker_ending_while_another_process_locks_the_store_settles_once_the_lock_goes(
        daemon_factory, rft_home: Path, tmp_path: Path, how: str) -> None:
    """The scheduler's writes wait out the lock on their own thread: /v1/health answers within 1 s meanwhile,
    the job is settled (succeeded, or failed naming SIGKILL) once the lock goes, and the next job starts."""
    gate = tmp_path / "exit-gate"
    env = {**SLOW_WORKER, "RFT_FAKE_STEP_S": "0.05", "RFT_FAKE_EXIT_GATE": str(gate),
           "RFT_STORE_BUSY_TIMEOUT_S": "0.5"}  # each write attempt waits 0.5 s for the lock, then retries
    d: DaemonProcess = daemon_factory(env=env)
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        first = c.create_job(job_request(train, valid, max_steps=4 if how == "exits" else 400, eval_interval=2))
        second = c.create_job(job_request(train, valid, max_steps=2))
        if how == "exits":
            wait_until(lambda: worker_outcome(rft_home, first.id) == "succeeded", 60, what="the worker's result")
        else:
            wait_until(lambda: len(metric_steps(rft_home, first.id)) >= 2, 60, what="the worker's first steps")
        worker = c.get_job(first.id).worker
        assert worker is not None
        worker_pid = worker["pid"]
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(rft_home / "rft.db")], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        latencies: list[float] = []
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            if how == "exits":
                gate.touch()  # the worker exits now, with the store locked
            else:
                os.kill(worker_pid, signal.SIGKILL)
            with httpx.Client(transport=httpx.HTTPTransport(uds=d.socket), base_url="http://rft", timeout=5) as h:
                def health_answers() -> bool:
                    t = time.monotonic()
                    body = h.get("/v1/health").json()
                    latencies.append(time.monotonic() - t)
                    return bool(body["store"] == "busy")

                wait_until(lambda: health_answers() and "waits and retries" in d.log() and len(latencies) >= 10, 30,
                           what="the daemon waiting out the lock while health answers")
                wait_until(lambda: not _alive(worker_pid), 10, what="the worker's exit")
                for _ in range(10):  # the worker is gone and its job not settled yet: the loop still answers
                    assert health_answers()
            assert c.get_job(first.id).status is S.running  # reads go on (WAL); the settle waits for the lock
        finally:
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.close()
            holder.wait(10)
        done = wait_until(lambda: (j := c.get_job(first.id)).status.is_terminal() and j, 30, what="the settle")
        if how == "exits":
            assert done.status is S.succeeded and done.fine_tuned_model == f"ft:fake:{first.id}", done.error
        else:
            assert done.status is S.failed and done.error is not None and "SIGKILL" in done.error.message
        gate.touch()
        nxt = wait_until(lambda: (j := c.get_job(second.id)).status.is_terminal() and j, 60, what="the next job")
        assert nxt.status is S.succeeded, nxt.error
    log = d.log()
    assert "the store is free again" in log and "Traceback" not in log, log[-3000:]
    print(f"health under the lock: {len(latencies)} calls, max {max(latencies) * 1000:.0f} ms")
    assert max(latencies) < 1.0, latencies


def test_sigterm_stops_the_daemon_through_its_own_cleanup(daemon_factory) -> None:
    """kill (SIGTERM), as systemd or a user sends it: the daemon shuts down gracefully and removes its socket and
    status file (uvicorn raises the signal again after its own shutdown; that must not skip ours)."""
    d = daemon_factory()
    status, sock = d.paths.status_file, d.paths.socket
    assert status.exists() and sock.exists()
    os.kill(d.pid, signal.SIGTERM)
    wait_until(lambda: d.proc.poll() is not None, 30, interval=0.05, what="the daemon to exit")
    assert d.proc.returncode == 128 + signal.SIGTERM
    assert not status.exists() and not sock.exists()
    assert "stopping" in d.log()
