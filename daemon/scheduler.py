"""Job state machine, FIFO queue and worker supervision.

One running job per GPU set (FIFO by creation). Each worker runs in its own session/process group,
writing to the store itself, so it outlives the daemon; on start the daemon re-adopts live workers
(pid + start time) and settles dead ones. Exit is noticed through a pidfd on the event loop: no polling.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from daemon import api
from daemon.bus import EventBus
from daemon.paths import Paths
from daemon.store import Store
from daemon.worker_protocol import ATTEMPT_HEADER, CANCEL_SIGNAL, PAUSE_SIGNAL, pause_signal_held, worker_command

log = logging.getLogger("rft.scheduler")

S = api.JobStatus
LOG_TAIL_LINES = 20
OOM_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "MemoryError", "Cannot allocate memory")


def process_start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def same_process(pid: int | None, start_time: float | None) -> bool:
    """True if `pid` is alive and is the process that started at `start_time` (no pid reuse)."""
    if not pid or start_time is None:
        return False
    actual = process_start_time(pid)
    if actual is None:
        return False
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return False
    return abs(actual - start_time) < 1.0


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def attempt_log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines the latest worker attempt wrote (after its header), never an earlier attempt's."""
    tail = log_tail(path, 2000)
    starts = [i for i, ln in enumerate(tail) if ln.startswith(ATTEMPT_HEADER)]
    if starts:
        tail = tail[starts[-1] + 1:]
    return tail[-lines:]


class Scheduler:
    """Owns job status transitions after creation; runs on the daemon's event loop.

    A job's status is what the user was told: cancel answers `cancelled` at once and the job stays so,
    while the worker's teardown (SIGTERM, then SIGKILL after a grace period) happens behind it. A job
    whose worker is still tearing down keeps its `worker_pid`, and counts against the one-job-per-GPU-set
    rule until the worker is gone.
    """

    def __init__(self, paths: Paths, store: Store, bus: EventBus, max_running: int = 1,
                 cancel_grace_s: float | None = None,
                 command: Callable[[dict[str, Any]], list[str]] = worker_command) -> None:
        self.paths = paths
        self.store = store
        self.bus = bus
        self.max_running = max_running
        self.cancel_grace_s = cancel_grace_s if cancel_grace_s is not None else float(
            os.environ.get("RFT_CANCEL_GRACE_S", "20"))
        self.command = command
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._watched: dict[str, int] = {}  # job id -> pidfd (children are also in _children, for reaping)
        self._kill_timers: dict[str, asyncio.TimerHandle] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._known_steps: dict[str, tuple[int | None, int]] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._loop_thread = threading.get_ident()
        log.info("daemon pid %d started on %s (max %d running job(s))", os.getpid(), self.paths.home,
                 self.max_running)
        self.recover()
        self.kick()

    def shutdown(self) -> None:
        """Stop watching; workers keep running (they outlive the daemon by design)."""
        if self._watched:
            log.info("daemon pid %d stopping; %d worker(s) keep running: %s", os.getpid(), len(self._watched),
                     ", ".join(sorted(self._watched)))
        else:
            log.info("daemon pid %d stopping", os.getpid())
        for job_id in list(self._watched):
            self._unwatch(job_id)
        for t in self._kill_timers.values():
            t.cancel()

    def recover(self) -> None:
        """Re-adopt live workers and settle the ones that died while no daemon watched."""
        for row in self.store.jobs_with_status(S.running):
            if same_process(row["worker_pid"], row["worker_start_time"]):
                self.store.add_event(row["id"], f"Daemon re-adopted worker pid {row['worker_pid']}")
                log.info("job %s: re-adopted worker pid %d", row["id"], row["worker_pid"])
                self._watch(row["id"], row["worker_pid"])
            else:
                self._settle(row["id"], returncode=None, while_away=True)
        for row in self.store.query("SELECT * FROM jobs WHERE worker_pid IS NOT NULL AND status != ?",
                                    [S.running.value]):
            # a cancelled job whose worker was still stopping when the daemon went down
            if same_process(row["worker_pid"], row["worker_start_time"]):
                self._watch(row["id"], row["worker_pid"])
                self._signal_group(row, CANCEL_SIGNAL)
                self._arm_kill(row["id"], row)
            else:
                self._release_worker(row["id"], row, returncode=None)
        for row in self.store.jobs_with_status(S.validating_files):
            self.validate_and_queue(row["id"])

    # ------------------------------------------------------------------ queue

    def running_count(self) -> int:
        """Jobs holding a GPU set: running ones, and cancelled ones whose worker has not exited yet."""
        row = self.store.query_one("SELECT COUNT(*) AS n FROM jobs WHERE status = ? OR worker_pid IS NOT NULL",
                                   [S.running.value])
        return int(row["n"]) if row else 0

    def kick(self) -> None:
        """Start queued jobs, FIFO, while there is a free GPU set (on the event loop, whoever asks)."""
        if not self._on_loop_thread():
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self.kick)  # spawning watches a pidfd: loop work
            return
        while self.running_count() < self.max_running:
            queued = self.store.jobs_with_status(S.queued)
            if not queued:
                return
            if not self._spawn(queued[0]):
                continue

    def validate_and_queue(self, job_id: str) -> None:
        """validating_files -> queued once the files the job names are in the store; else failed."""
        row = self.store.get_job_row(job_id)
        if row is None:
            return
        missing = [f for f in (row["training_file"], row["validation_file"]) if f and
                   self.store.get_file_row(f) is None]
        if missing:
            self._transition(job_id, S.failed, f"File {missing[0]} is not in the store", level="error",
                             error_code="invalid_file", error_message=f"File {missing[0]} is not in the store",
                             error_param="training_file")
            return
        self._transition(job_id, S.queued, "Files validated; job queued")
        self.kick()

    # ------------------------------------------------------------------ control

    def cancel(self, job_id: str) -> api.JobStatus:
        """Cancel now: the job is `cancelled` when this returns (OpenAI's answer); the worker stops behind it."""
        row = self._row(job_id)
        status = S(row["status"])
        if status.is_terminal():
            return status
        live = status is S.running and bool(row["worker_pid"])
        message = "Job cancelled" + ("; stopping the worker" if live else "")
        if not self._transition(job_id, S.cancelled, message, expect=[status], requested_action="cancel"):
            return S(self._row(job_id)["status"])  # it changed under us (the worker just ended): say what it is
        if live:
            self._signal_group(row, CANCEL_SIGNAL)
            self._arm_kill(job_id, row)
        self.kick()
        return S.cancelled

    def pause(self, job_id: str) -> api.JobStatus:
        """Queued: paused now. Running: the worker stops before training starts, or checkpoints at the next step."""
        row = self._row(job_id)
        status = S(row["status"])
        if status is S.running and row["worker_pid"]:
            if row["requested_action"] != "pause":
                self.store.update_job(job_id, requested_action="pause")
                self.store.add_event(job_id, "Pause requested: the worker checkpoints at the next step "
                                             "(or stops at once if training has not started)")
                log.info("job %s: pause requested (worker pid %d)", job_id, row["worker_pid"])
            self._signal_group(row, PAUSE_SIGNAL)
            return status
        if status in (S.queued, S.validating_files):
            self._transition(job_id, S.paused, "Job paused before it started", expect=[status])
            return S(self._row(job_id)["status"])
        return status

    def resume(self, job_id: str) -> api.JobStatus:
        row = self._row(job_id)
        if S(row["status"]) is not S.paused:
            return S(row["status"])
        ckpts = self.store.checkpoints(job_id)
        resume_from = ckpts[0].path if ckpts else None
        where = f" from step {ckpts[0].step_number}" if ckpts else " from the beginning (no checkpoint yet)"
        self._transition(job_id, S.queued, "Job resumed" + where, expect=[S.paused], resume_from=resume_from,
                         requested_action=None)
        self.kick()
        return S(self._row(job_id)["status"])

    # ------------------------------------------------------------------ workers

    def _spawn(self, row: dict[str, Any]) -> bool:
        job_id = row["id"]
        job_dir = self.paths.job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command(row)
        env = {**os.environ, "RFT_HOME": str(self.paths.home), "RFT_JOB_ID": job_id, "PYTHONUNBUFFERED": "1"}
        attempt = (row["attempts"] or 0) + 1
        logf = open(self.paths.job_log(job_id), "ab")
        logf.write(f"\n{ATTEMPT_HEADER}{attempt} {time.strftime('%Y-%m-%d %H:%M:%S')} starting: "
                   f"{' '.join(cmd)}\n".encode())
        logf.flush()
        try:
            with pause_signal_held():  # a pause before the worker's handler exists waits for it
                proc = subprocess.Popen(cmd, cwd=job_dir, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            self._transition(job_id, S.failed, f"Could not start the worker: {e}", level="error",
                             error_code="worker_start_failed", error_message=str(e))
            return False
        finally:
            logf.close()
        start = process_start_time(proc.pid) or time.time()
        self._children[proc.pid] = proc
        now = int(time.time())
        ok = self._transition(
            job_id, S.running, f"Worker started (pid {proc.pid})", expect=[S.queued],
            worker_pid=proc.pid, worker_pgid=proc.pid, worker_start_time=start, worker_outcome=None,
            worker_outcome_detail=None, requested_action=None, started_at=row["started_at"] or now,
            attempts=attempt,
        )
        if not ok:  # cancelled or paused while we spawned
            log.info("job %s: no longer queued; stopping the worker it just got (pid %d)", job_id, proc.pid)
            self._kill_group(proc.pid)
        else:
            log.info("job %s: worker pid %d started (attempt %d): %s", job_id, proc.pid, attempt, " ".join(cmd))
        self._watch(job_id, proc.pid)
        return ok

    def _watch(self, job_id: str, pid: int) -> None:
        assert self.loop is not None
        try:
            fd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            self.loop.call_soon(self._on_exit, job_id, pid)
            return
        self._watched[job_id] = fd
        self.loop.add_reader(fd, self._on_exit, job_id, pid)

    def _unwatch(self, job_id: str) -> None:
        fd = self._watched.pop(job_id, None)
        if fd is not None and self.loop is not None:
            self.loop.remove_reader(fd)
            os.close(fd)

    def _on_exit(self, job_id: str, pid: int) -> None:
        self._unwatch(job_id)
        returncode: int | None = None  # known for our own children; re-adopted workers report via the store
        proc = self._children.pop(pid, None)
        if proc is not None:
            try:
                returncode = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                returncode = None
        timer = self._kill_timers.pop(job_id, None)
        if timer:
            timer.cancel()
        log.info("job %s: worker pid %d exited (%s)", job_id, pid,
                 "exit status unknown" if returncode is None else _describe_returncode(returncode))
        # the worker may have left children in its group (torchrun ranks): make sure they are gone
        row = self.store.get_job_row(job_id)
        if row and row["worker_pgid"]:
            self._kill_group(row["worker_pgid"])
        if row is None or row["worker_pid"] in (None, pid):  # not a worker this job no longer counts on
            self._settle(job_id, returncode)
        self.kick()

    def _settle(self, job_id: str, returncode: int | None, while_away: bool = False) -> None:
        """Turn a finished worker into the job's next state, with a reason a person can act on."""
        row = self.store.get_job_row(job_id)
        if row is None:
            return
        if S(row["status"]) is not S.running:
            # answered already (cancelled): the status stands, whatever the worker wrote on its way out
            if row["worker_pid"]:
                self._release_worker(job_id, row, returncode)
            return
        outcome, detail = row["worker_outcome"], row["worker_outcome_detail"]
        clear = self._cleared(row)
        requested = row["requested_action"]
        if requested == "cancel" or outcome == "cancelled":
            self._transition(job_id, S.cancelled, "Job cancelled", **clear)
        elif outcome == "succeeded":
            self._transition(job_id, S.succeeded, "Job succeeded", **clear)
        elif outcome == "paused":
            self._transition(job_id, S.paused, "Job paused" + (f": {detail}" if detail else ""), **clear)
        elif outcome == "failed":
            self._fail(job_id, detail or "the worker reported a failure", clear, row)
        elif requested == "pause" and returncode == -PAUSE_SIGNAL:
            # a worker that let the pause signal through without a handler: it stopped at once, unsaved
            self._transition(job_id, S.paused, "Job paused: the worker had no pause handler and stopped at once "
                             f"(nothing saved since the last checkpoint); resume starts {self._resume_point(job_id)}",
                             **clear)
        elif while_away and self.store.checkpoints(job_id):
            ckpt = self.store.checkpoints(job_id)[0]
            self._transition(job_id, S.queued,
                             f"Worker died while the daemon was down; resuming from step {ckpt.step_number}",
                             level="warn", resume_from=ckpt.path, **clear)
        else:
            why = "the worker died" if returncode is None else _describe_exit(returncode)
            self._fail(job_id, why, clear, row, returncode=returncode)

    def _resume_point(self, job_id: str) -> str:
        ckpts = self.store.checkpoints(job_id)
        return f"from step {ckpts[0].step_number}" if ckpts else "from the beginning"

    @staticmethod
    def _cleared(row: dict[str, Any]) -> dict[str, Any]:
        """Fields that forget a worker, adding its run time to the job's."""
        ran = max(0.0, time.time() - (row["worker_start_time"] or time.time()))
        return dict(worker_pid=None, worker_pgid=None, worker_start_time=None, requested_action=None,
                    run_seconds=(row["run_seconds"] or 0) + ran)

    def _release_worker(self, job_id: str, row: dict[str, Any], returncode: int | None) -> None:
        """A cancelled job's worker is gone: free its GPU set; the job's status and answer stay as they were."""
        self.store.update_job(job_id, **self._cleared(row))
        how = "" if returncode is None else f" ({_describe_returncode(returncode)})"
        self.store.add_event(job_id, f"Worker pid {row['worker_pid']} stopped{how}")
        self.bus.publish(api.StreamEventType.job_event, job_id=job_id)

    def _fail(self, job_id: str, reason: str, clear: dict[str, Any], row: dict[str, Any],
              returncode: int | None = None) -> None:
        tail = attempt_log_tail(self.paths.job_log(job_id))  # this attempt's lines, never a previous worker's
        text = "\n".join(tail)
        code = "worker_failed"
        hint = ""
        if any(m in text for m in OOM_MARKERS) or returncode == -signal.SIGKILL and "Killed" in text:
            code = "out_of_memory"
            hint = (" Out of memory: lower batch_size, num_generations or max_completion_length, or use a "
                    "smaller model.")
        last = next((ln for ln in reversed(tail) if ln.strip()), "")
        message = f"{reason}.{hint}" + (f" Last log line: {last.strip()[:300]}" if last else "")
        self._transition(job_id, S.failed, message, level="error", error_code=code, error_message=message,
                         **clear)
        if tail:
            self.store.add_event(job_id, "Worker log tail:\n" + "\n".join(tail), level="error",
                                 data={"log_tail": tail})

    def _signal_group(self, row: dict[str, Any], sig: signal.Signals) -> None:
        if not same_process(row["worker_pid"], row["worker_start_time"]):
            return
        try:
            os.killpg(row["worker_pgid"] or row["worker_pid"], sig)
        except ProcessLookupError:
            pass

    def _arm_kill(self, job_id: str, row: dict[str, Any]) -> None:
        assert self.loop is not None
        if not self._on_loop_thread():  # a control request handled on a thread-pool thread
            self.loop.call_soon_threadsafe(self._arm_kill, job_id, row)
            return
        if job_id in self._kill_timers:
            return
        pgid = row["worker_pgid"] or row["worker_pid"]

        def escalate() -> None:
            self._kill_timers.pop(job_id, None)
            current = self.store.get_job_row(job_id)
            if current and current["worker_pid"] == row["worker_pid"]:
                self.store.add_event(job_id, f"Worker ignored SIGTERM for {self.cancel_grace_s:.0f} s; "
                                             "sending SIGKILL", level="warn")
                log.warning("job %s: worker pid %s ignored SIGTERM for %.0f s; sending SIGKILL", job_id,
                            row["worker_pid"], self.cancel_grace_s)
                self._kill_group(pgid)

        self._kill_timers[job_id] = self.loop.call_later(self.cancel_grace_s, escalate)

    @staticmethod
    def _kill_group(pgid: int, sig: signal.Signals = signal.SIGKILL) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # ------------------------------------------------------------------ notifications

    def on_worker_notify(self, job_id: str) -> None:
        """A worker committed something: announce new metric steps / validation / status."""
        row = self.store.get_job_row(job_id)
        if row is None:
            return
        last_step = self.store.last_metric_step(job_id)
        n_valid = len(self.store.validation_steps(job_id))
        prev = self._known_steps.get(job_id, (None, 0))
        if last_step is not None and last_step != prev[0]:
            self.bus.publish(api.StreamEventType.job_metrics, job_id=job_id, step=last_step,
                             status=S(row["status"]),
                             data={"total_steps": row["total_steps"], "train_reward_mean": row["train_reward_mean"]})
        if n_valid != prev[1]:
            self.bus.publish(api.StreamEventType.job_validation, job_id=job_id, step=row["step"],
                             data={"valid_reward_latest": row["valid_reward_latest"]})
        self._known_steps[job_id] = (last_step, n_valid)
        self.bus.publish(api.StreamEventType.job_event, job_id=job_id)

    # ------------------------------------------------------------------ helpers

    def _on_loop_thread(self) -> bool:
        """Control calls may come from request handlers on thread-pool threads; loop state is the loop's."""
        return self._loop_thread is None or threading.get_ident() == self._loop_thread

    def _row(self, job_id: str) -> dict[str, Any]:
        row = self.store.get_job_row(job_id)
        if row is None:
            raise KeyError(job_id)
        return row

    def _transition(self, job_id: str, new: api.JobStatus, message: str, level: str = "info",
                    expect: list[api.JobStatus] | None = None, **fields: Any) -> bool:
        before = self.store.get_job_row(job_id)
        old = before["status"] if before else "?"
        ok = self.store.transition(job_id, new, message, level=level, expect=expect, **fields)
        if ok:
            log.log(logging.ERROR if level == "error" else logging.WARNING if level == "warn" else logging.INFO,
                    "job %s: %s -> %s: %s", job_id, old, new.value, message.splitlines()[0][:500])
            self.bus.publish(api.StreamEventType.job_status, job_id=job_id, status=new)
        return ok


def _describe_returncode(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        extra = " (possibly the kernel's out-of-memory killer)" if returncode == -signal.SIGKILL else ""
        return f"the worker was killed by {name}{extra}"
    return f"the worker exited with code {returncode} without reporting a result"
