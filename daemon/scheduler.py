"""Job state machine, FIFO queue and worker supervision.

One running job per GPU set (FIFO by creation). Each worker runs in its own session/process group,
writing to the store itself, so it outlives the daemon; on start the daemon re-adopts live workers
(pid + start time) and settles dead ones. Exit is noticed through a pidfd on the event loop: no polling.

The event loop never touches SQLite here: what a worker's exit, a spawn, a kill timer or a worker's
notification needs from the store runs on the scheduler's own store thread, which waits out a database
locked by another process (retrying each write) instead of losing it; loop work (pidfd readers, timers)
is posted back to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from daemon import api, health, metrics
from daemon.bus import EventBus
from daemon.cluster_jobs import ClusterJobs
from daemon.paths import Paths
from daemon.procs import log_tail, process_start_time, same_process
from daemon.store import OUT_OF_MEMORY_PREFIX, Store, is_busy_error, loads, stored_model
from daemon.worker_protocol import (
    ATTEMPT_HEADER,
    CANCEL_SIGNAL,
    PAUSE_SIGNAL,
    STACKS_SIGNAL,
    http_worker_env,
    num_processes,
    pause_signal_held,
    worker_command,
)

log = logging.getLogger("rft.scheduler")

S = api.JobStatus
T = TypeVar("T")
LOG_TAIL_LINES = 20
OOM_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "MemoryError", "Cannot allocate memory")
RETRY_FIRST_S = 0.1  # a busy store: first wait before writing again, doubling up to RETRY_MAX_S
RETRY_MAX_S = 2.0
REQUEST_WAIT_S = 10.0  # create/resume answer once the worker is spawned (if the store lets it happen by then)
STALL_CHECK_S = float(os.environ.get("RFT_STALL_CHECK_S", "2"))  # how often running jobs are checked for a stall
STALL_STEPS = 50  # the median step time is taken over this many latest steps
STACK_DUMP_GRACE_S = 1.0  # on_stall fail: the worker gets this long to write its stacks before it is killed
# a cluster worker reads the request with its control state (polled every second) before it is stopped
CLUSTER_STACK_DUMP_GRACE_S = 3.0


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
                 command: Callable[[dict[str, Any]], list[str]] = worker_command,
                 report_url: str | None = None) -> None:
        self.paths = paths
        self.report_url = report_url  # the daemon's TCP URL, for workers that report over the API
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
        self._known_alarms: dict[str, int] = {}  # job id -> last alarm seq announced on the stream
        self._stalled: dict[str, int] = {}  # job id -> the step a `stalled` alarm was raised after
        self._stall_timer: asyncio.TimerHandle | None = None
        self._stopping = threading.Event()
        self._store_ident: int | None = None
        # one thread for everything the scheduler writes (ordered, so a settle never races a spawn), one for
        # the reads behind stream notifications (so a write waiting out a lock never delays the live views)
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="rft-scheduler", initializer=self._mark_store_thread)
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="rft-notify")
        self._pending_lock = threading.Lock()
        self._kick_waiting: Future[None] | None = None
        self._notify_pending: set[str] = set()
        self.cluster_jobs = ClusterJobs(self)

    # ------------------------------------------------------------------ lifecycle

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._loop_thread = threading.get_ident()
        log.info("daemon pid %d started on %s (max %d running job(s))", os.getpid(), self.paths.home,
                 self.max_running)
        self._submit(self.recover)
        self.kick()
        self._stall_timer = loop.call_later(STALL_CHECK_S, self._stall_tick)
        self.cluster_jobs.start()

    def shutdown(self) -> None:
        """Stop watching; workers keep running (they outlive the daemon by design)."""
        if self._watched:
            log.info("daemon pid %d stopping; %d worker(s) keep running: %s", os.getpid(), len(self._watched),
                     ", ".join(sorted(self._watched)))
        else:
            log.info("daemon pid %d stopping", os.getpid())
        self._stopping.set()  # a write still waiting for the lock gives up; the next daemon settles it
        self.cluster_jobs.shutdown()
        for job_id in list(self._watched):
            self._unwatch(job_id)
        for t in self._kill_timers.values():
            t.cancel()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        self._reads.shutdown(wait=False, cancel_futures=True)
        self._writes.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ threads

    def _mark_store_thread(self) -> None:
        self._store_ident = threading.get_ident()

    def _on_store_thread(self) -> bool:
        return threading.get_ident() == self._store_ident

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[None] | None:
        """Run `fn` on the store thread (in order with every other scheduler write); errors are logged."""
        if self._stopping.is_set():
            return None
        try:
            return self._writes.submit(self._logged, fn, *args)
        except RuntimeError:  # shut down meanwhile
            return None

    def _wait_from_request(self, done: Future[None] | None) -> None:
        """A request thread waits (bounded) for the store thread, so its answer shows the outcome (a spawned
        worker); the loop and the store thread itself never wait."""
        if done is None or self._on_loop_thread() or self._on_store_thread():
            return
        with contextlib.suppress(FutureTimeout):
            done.result(timeout=REQUEST_WAIT_S)

    @staticmethod
    def _logged(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("scheduler: %s%r failed", getattr(fn, "__name__", fn), args)

    def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One store write. On the store thread a busy store is waited out (retrying with back-off) rather than
        lost; anywhere else (a request thread) it raises, and the request is answered 503 store_busy."""
        if not self._on_store_thread():
            return fn(*args, **kwargs)
        delay, started = RETRY_FIRST_S, time.monotonic()
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as e:
                if not is_busy_error(e) or self._stopping.is_set():
                    raise
                if delay == RETRY_FIRST_S:
                    log.warning("the store is locked by another process (%s); %s waits and retries", e,
                                getattr(fn, "__name__", "a write"))
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if delay != RETRY_FIRST_S:
                log.info("the store is free again: %s written after %.1f s", getattr(fn, "__name__", "a write"),
                         time.monotonic() - started)
            return result

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Loop state (pidfd readers, timers) is changed on the loop, whichever thread asks."""
        if self._on_loop_thread():
            fn(*args)
        else:
            assert self.loop is not None
            self.loop.call_soon_threadsafe(fn, *args)

    def recover(self) -> None:
        """Re-adopt live workers and settle the ones that died while no daemon watched."""
        for row in self.store.jobs_with_status(S.running):
            if row["cluster"]:
                self.cluster_jobs.reattached(row)
            elif same_process(row["worker_pid"], row["worker_start_time"]):
                self._known_alarms[row["id"]] = self.store.last_alarm_seq(row["id"])
                self._write(self.store.add_event, row["id"], f"Daemon re-adopted worker pid {row['worker_pid']}")
                log.info("job %s: re-adopted worker pid %d", row["id"], row["worker_pid"])
                self._watch(row["id"], row["worker_pid"])
            else:
                self._settle(row["id"], returncode=None, while_away=True)
        for row in self.store.stopping_workers():
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

    def kick(self) -> Future[None] | None:
        """Start queued jobs, FIFO, while there is a free GPU set (on the store thread, whoever asks)."""
        with self._pending_lock:
            if self._kick_waiting is None:  # else one already waits to run, and will see what this caller changed
                self._kick_waiting = self._submit(self._kick)
            return self._kick_waiting

    def _kick(self) -> None:
        with self._pending_lock:
            self._kick_waiting = None
        for row in self.store.jobs_with_status(S.queued):
            if row["cluster"]:  # the cluster's own scheduler queues it; it holds none of this machine's GPUs
                self.cluster_jobs.submit(row)
        while self.store.workers_holding_gpus() < self.max_running:
            queued = [r for r in self.store.jobs_with_status(S.queued) if not r["cluster"]]
            if not queued:
                return
            if not self._spawn(queued[0]):
                continue

    def validate_and_queue(self, job_id: str) -> None:
        """validating_files -> queued once the files the job names are in the store; else failed.

        From a request thread a busy store hands the job to the store thread, which queues it once it can
        (the request is answered with the job still validating_files, never a job stuck there)."""
        try:
            self._validate_and_queue(job_id)
        except Exception as e:
            if self._on_store_thread() or not is_busy_error(e):
                raise
            log.warning("job %s: the store is busy; it is queued once the lock is free", job_id)
            self._submit(self._validate_and_queue, job_id)

    def _validate_and_queue(self, job_id: str) -> None:
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
        self._wait_from_request(self.kick())

    # ------------------------------------------------------------------ control

    def cancel(self, job_id: str) -> api.JobStatus:
        """Cancel now: the job is `cancelled` when this returns (OpenAI's answer); the worker stops behind it."""
        row = self._row(job_id)
        status = S(row["status"])
        if status.is_terminal():
            return status
        live = status is S.running and bool(row["worker_pid"])
        remote = status is S.running and bool(row["cluster"] and row["engine_id"])
        message = "Job cancelled" + ("; stopping the worker" if live else "") + (
            f"; stopping {row['engine_id']} on cluster {row['cluster']}" if remote else "")
        if not self._transition(job_id, S.cancelled, message, expect=[status], requested_action="cancel"):
            return S(self._row(job_id)["status"])  # it changed under us (the worker just ended): say what it is
        if row["cluster"]:  # a running engine job, or one caught mid-submission
            self.cluster_jobs.cancel(row)
        if live:
            self._signal_group(row, CANCEL_SIGNAL)
            self._arm_kill(job_id, row)
        self.kick()
        return S.cancelled

    def pause(self, job_id: str) -> api.JobStatus:
        """Queued: paused now. Running: the worker stops before training starts, or checkpoints at the next step."""
        row = self._row(job_id)
        status = S(row["status"])
        if status is S.running and row["cluster"]:
            # the cluster worker reads the request over the API at its next step, checkpoints to storage, exits
            if row["requested_action"] != "pause":
                self._write(self.store.update_job, job_id, requested_action="pause")
                self._write(self.store.add_event, job_id, f"Pause requested: the worker on cluster {row['cluster']} "
                                                          "checkpoints at its next step and exits")
            return status
        if status is S.running and row["worker_pid"]:
            if row["requested_action"] != "pause":
                self._write(self.store.update_job, job_id, requested_action="pause")
                self._write(self.store.add_event, job_id, "Pause requested: the worker checkpoints at the next step "
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
        self._wait_from_request(self.kick())
        return S(self._row(job_id)["status"])

    def issue_job_token(self, job_id: str) -> str:
        """A fresh reporting token for a worker that reports over the API (the store keeps only its hash)."""
        token: str = self._write(self.store.mint_job_token, job_id)
        return token

    # ------------------------------------------------------------------ workers

    def _spawn(self, row: dict[str, Any]) -> bool:
        job_id = row["id"]
        job_dir = self.paths.job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command(row)
        env = {**os.environ, "RFT_HOME": str(self.paths.home), "RFT_JOB_ID": job_id, "PYTHONUNBUFFERED": "1"}
        cwd = job_dir
        if os.environ.get("RFT_WORKER_REPORTER") == "http":
            try:
                env, cwd = self._http_worker(row, env)
            except (OSError, ValueError) as e:
                self._transition(job_id, S.failed, f"Could not start the worker: {e}", level="error",
                                 error_code="worker_start_failed", error_message=str(e))
                return False
            cmd = [*shlex.split(os.environ.get("RFT_WORKER_WRAPPER", "").replace("{home}", str(self.paths.home))),
                   *cmd]
        attempt = (row["attempts"] or 0) + 1
        logf = open(self.paths.job_log(job_id), "ab")
        logf.write(f"\n{ATTEMPT_HEADER}{attempt} {time.strftime('%Y-%m-%d %H:%M:%S')} starting: "
                   f"{' '.join(cmd)}\n".encode())
        logf.flush()
        try:
            with pause_signal_held():  # a pause before the worker's handler exists waits for it
                proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            self._transition(job_id, S.failed, f"Could not start the worker: {e}", level="error",
                             error_code="worker_start_failed", error_message=str(e))
            return False
        finally:
            logf.close()
        start = process_start_time(proc.pid) or time.time()
        self._children[proc.pid] = proc
        self._known_alarms[job_id] = self.store.last_alarm_seq(job_id)
        self._stalled.pop(job_id, None)
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

    def _http_worker(self, row: dict[str, Any], env: dict[str, str]) -> tuple[dict[str, str], Path]:
        """A local worker that reports over the API like a cluster worker (RFT_WORKER_REPORTER=http).

        It gets a fresh reporting token, no RFT_HOME, and a scratch dir outside the store
        (RFT_WORKER_SCRATCH_ROOT, default the system temp dir) holding the job's dataset files, as a cluster
        executor ships them. RFT_WORKER_WRAPPER prefixes its command (`{home}` is RFT_HOME), e.g. to hide the
        store from it: `bwrap --dev-bind / / --tmpfs {home} --`.
        """
        if not self.report_url:
            raise ValueError("RFT_WORKER_REPORTER=http needs the daemon's TCP listener (start it with --tcp)")
        job_id = row["id"]
        root = Path(os.environ.get("RFT_WORKER_SCRATCH_ROOT") or tempfile.gettempdir())
        scratch = root / f"rft-worker-{job_id}"
        files = scratch / "files"
        files.mkdir(parents=True, exist_ok=True, mode=0o700)
        snapshot = api.JobSnapshot.from_json(row["snapshot"])
        for f in (snapshot.training_file, snapshot.validation_file):
            if f is not None and f.path and not (files / Path(f.path).name).exists():
                shutil.copyfile(f.path, files / Path(f.path).name)
        token = self._write(self.store.mint_job_token, job_id)
        return http_worker_env(env, job_id, self.report_url, token, str(scratch), files_dir=str(files)), scratch

    def _watch(self, job_id: str, pid: int) -> None:
        """Call `_on_exit` when `pid` ends (a pidfd reader on the loop)."""
        if not self._on_loop_thread():
            self._on_loop(self._watch, job_id, pid)
            return
        assert self.loop is not None
        if job_id in self._watched:
            return
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
        """On the loop: forget the pidfd and kill timer; the store work happens on the store thread."""
        self._unwatch(job_id)
        timer = self._kill_timers.pop(job_id, None)
        if timer:
            timer.cancel()
        self._submit(self._worker_exited, job_id, pid, self._children.pop(pid, None))

    def _worker_exited(self, job_id: str, pid: int, proc: subprocess.Popen[bytes] | None) -> None:
        returncode: int | None = None  # known for our own children; re-adopted workers report via the store
        if proc is not None:
            try:
                returncode = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                returncode = None
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
            why = f": {detail}" if outcome == "cancelled" and detail and requested != "cancel" else ""
            self._transition(job_id, S.cancelled, "Job cancelled" + why, **clear)
        elif outcome == "succeeded":
            self._transition(job_id, S.succeeded, "Job succeeded", **clear)
        elif outcome == "paused":
            self._transition(job_id, S.paused, "Job paused" + (f": {detail}" if detail else ""), **clear)
        elif outcome == "failed":
            if not self._relaunch_smaller(job_id, row, detail, clear):
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

    def _relaunch_smaller(self, job_id: str, row: dict[str, Any], detail: str | None, clear: dict[str, Any]) -> bool:
        """`on_oom: retry_smaller` for a multi-process job: queue it again, once, from its last checkpoint.

        One process retries by itself (worker/grpo.py); the ranks of several cannot agree on a retry (the others
        wait in a collective for the one that ran out), so torchrun ends and the next attempt starts smaller: the
        worker reads `oom_retries` and halves its per-device batch, doubling the accumulation (same global batch).
        """
        if not (detail or "").startswith(OUT_OF_MEMORY_PREFIX) or row["oom_retries"] or row["cluster"]:
            return False
        resolved = loads(row["resolved_hyperparameters"], {}) or {}
        if resolved.get("on_oom") != "retry_smaller" or num_processes(row) < 2:
            return False
        ckpts = self.store.checkpoints(job_id)
        resume_from = ckpts[0].path if ckpts else None
        where = f"the checkpoint of step {ckpts[0].step_number}" if ckpts else "the start (no checkpoint yet)"
        message = (f"{detail} Relaunching the {num_processes(row)} processes once from {where} with half the "
                   "per-device batch (accumulation doubled: same global batch).")
        return self._transition(job_id, S.queued, message, level="warn", expect=[S.running], resume_from=resume_from,
                                oom_retries=1, **clear)

    def _resume_point(self, job_id: str) -> str:
        ckpts = self.store.checkpoints(job_id)
        return f"from step {ckpts[0].step_number}" if ckpts else "from the beginning"

    @staticmethod
    def _cleared(row: dict[str, Any]) -> dict[str, Any]:
        """Fields that forget a worker, adding its run time to the job's."""
        ran = max(0.0, time.time() - (row["worker_start_time"] or time.time()))
        return {"worker_pid": None, "worker_pgid": None, "worker_start_time": None, "requested_action": None,
                "run_seconds": (row["run_seconds"] or 0) + ran}

    def _release_worker(self, job_id: str, row: dict[str, Any], returncode: int | None) -> None:
        """A cancelled job's worker is gone: free its GPU set; the job's status and answer stay as they were."""
        self._write(self.store.update_job, job_id, **self._cleared(row))
        how = "" if returncode is None else f" ({_describe_returncode(returncode)})"
        self._write(self.store.add_event, job_id, f"Worker pid {row['worker_pid']} stopped{how}")
        self.bus.publish(api.StreamEventType.job_event, job_id=job_id)

    def _fail(self, job_id: str, reason: str, clear: dict[str, Any], row: dict[str, Any],
              returncode: int | None = None) -> None:
        tail = attempt_log_tail(self.paths.job_log(job_id))  # this attempt's lines, never a previous worker's
        text = "\n".join(tail)
        code = "worker_failed"
        hint = ""
        explained = reason.startswith("out of memory")  # the worker's own account: step, phase, peak, fix
        if explained or any(m in text for m in OOM_MARKERS) or returncode == -signal.SIGKILL and "Killed" in text:
            code = "out_of_memory"
            hint = "" if explained else (" Out of memory: lower batch_size, num_generations or max_completion_length, "
                                         "or use a smaller model.")
        last = next((ln for ln in reversed(tail) if ln.strip()), "")
        message = f"{reason}.{hint}" + (f" Last log line: {last.strip()[:300]}" if last else "")
        self._transition(job_id, S.failed, message, level="error", error_code=code, error_message=message,
                         **clear)
        if tail:
            self._write(self.store.add_event, job_id, "Worker log tail:\n" + "\n".join(tail), level="error",
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

        def escalate() -> None:  # on the loop: the store work goes to the store thread
            self._kill_timers.pop(job_id, None)
            self._submit(escalate_now)

        def escalate_now() -> None:
            current = self.store.get_job_row(job_id)
            if current and current["worker_pid"] == row["worker_pid"]:
                self._write(self.store.add_event, job_id, f"Worker ignored SIGTERM for {self.cancel_grace_s:.0f} s; "
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
        """A worker committed something: announce it from the notify thread (reads never run on the loop)."""
        with self._pending_lock:
            if job_id in self._notify_pending:
                return  # a burst of pokes is one announcement
            self._notify_pending.add(job_id)
        try:
            self._reads.submit(self._announce, job_id)
        except RuntimeError:  # shut down meanwhile
            pass

    def _announce(self, job_id: str) -> None:
        """New metric steps / validation / status, as stream events."""
        with self._pending_lock:
            self._notify_pending.discard(job_id)
        try:
            self._announce_now(job_id)
        except Exception as e:  # noqa: BLE001 - a missed poke costs a live view one refresh, never the daemon
            log.warning("job %s: stream notification skipped (%s)", job_id, e)

    def _announce_now(self, job_id: str) -> None:
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
        if job_id in self._stalled and last_step is not None:  # the step after a stall: clear it at once
            self._submit(self._clear_stall, job_id, last_step)
        self._announce_alarms(job_id)
        self.bus.publish(api.StreamEventType.job_event, job_id=job_id)

    def _announce_alarms(self, job_id: str) -> None:
        """Alarms the worker recorded since the last announcement, one `job.alarm` stream event each."""
        known = self._known_alarms.get(job_id)
        if known is None:
            return  # not a worker this daemon started or re-adopted: nothing to announce
        for alarm in self.store.alarms(job_id, after_seq=known):
            self._publish_alarm(job_id, alarm)
            self._known_alarms[job_id] = max(self._known_alarms.get(job_id, 0), int(alarm.id.rsplit("-", 1)[1]))

    def _publish_alarm(self, job_id: str, alarm: api.JobAlarm) -> None:
        self.bus.publish(api.StreamEventType.job_alarm, job_id=job_id, step=alarm.step,
                         data={"alarm": alarm.name, "id": alarm.id, "severity": alarm.severity,
                               "message": alarm.message, "action": alarm.action, "grader": alarm.grader})

    # ------------------------------------------------------------------ stalls

    def _stall_tick(self) -> None:
        """On the loop, every STALL_CHECK_S: the check itself reads the store on the store thread."""
        if self._stopping.is_set() or self.loop is None:
            return
        self._submit(self._check_stalls)
        self._stall_timer = self.loop.call_later(STALL_CHECK_S, self._stall_tick)

    def _check_stalls(self) -> None:
        now = time.time()
        for row in self.store.jobs_with_status(S.running):
            if row["worker_pid"] or (row["cluster"] and row["engine_id"]):  # a local worker, or an engine's job
                self._check_stall(row, now)

    def _check_stall(self, row: dict[str, Any], now: float) -> None:
        """`stalled`: no step for factor x the median step time (and the floor) since this attempt's last step."""
        job_id = row["id"]
        recent = self.store.recent_metrics(job_id, STALL_STEPS)
        if not recent or recent[0].created_at < (row["worker_start_time"] or 0):
            return  # this worker attempt has logged no step yet: nothing to compare with (model loading, ...)
        last = recent[0]
        if job_id in self._stalled:
            self._clear_stall(job_id, last.step)
            return
        snapshot = stored_model(api.JobSnapshot, row["snapshot"], job_id)
        guardrails = snapshot.guardrails if snapshot else None
        if not health.settings(guardrails)["stalled"].enabled:
            return
        times = [t for m in recent if (t := m.values.get(metrics.STEP_WALL_S)) is not None and t > 0]
        longest_valid = max((v for m in recent if (v := m.values.get(metrics.VALIDATION_S)) is not None), default=0.0)
        limit = health.stall_after_s(times or [max(1e-3, recent[0].created_at - recent[-1].created_at)
                                               / max(1, len(recent) - 1)], guardrails, longest_valid)
        # a cluster job's steps come over the API: none could arrive while this daemon was not running
        idle = now - max(last.created_at, self.cluster_jobs.since if row["cluster"] else 0.0)
        if limit is None or idle <= limit:
            return
        self._stalled[job_id] = last.step
        self._raise_stall(row, health.stall_alarm(last.step, idle, limit, guardrails))

    def _clear_stall(self, job_id: str, step: int | None) -> None:
        """A step after a `stalled` alarm ends its episode (on the store thread)."""
        raised = self._stalled.get(job_id)
        if raised is None or step is None or step <= raised:
            return
        del self._stalled[job_id]
        if self._write(self.store.clear_alarm, job_id, "stalled", step):
            self.bus.publish(api.StreamEventType.job_event, job_id=job_id)

    def _raise_stall(self, row: dict[str, Any], alarm: health.Alarm) -> None:
        """Ask the worker for every thread's stack (into the job log), record the alarm, fail the job if asked."""
        job_id = row["id"]
        log.warning("job %s: stalled: %s", job_id, alarm.message)
        if row["cluster"]:  # a process on another machine: its reporter reads the request with its control state
            self._write(self.store.request_stacks, job_id)
        else:
            self._signal_group(row, STACKS_SIGNAL)
        alarm_id = self._write(self.store.add_alarm, job_id, alarm.as_dict())
        if alarm_id is not None:
            for a in self.store.alarms(job_id, after_seq=int(alarm_id.rsplit("-", 1)[1]) - 1):
                self._publish_alarm(job_id, a)
            self._known_alarms[job_id] = max(self._known_alarms.get(job_id, 0), int(alarm_id.rsplit("-", 1)[1]))
        self.bus.publish(api.StreamEventType.job_event, job_id=job_id)
        if alarm.action != "fail":
            return
        if row["cluster"]:  # failed once the worker had time to read the request and write its stacks
            message = f"stalled: {alarm.message}"

            def fail() -> None:
                if self._stalled.get(job_id) != alarm.step:  # a step came meanwhile: the stall is over
                    return
                if self._transition(job_id, S.failed, f"Job failed: {message}; stopping {row['engine_id']} on "
                                    f"cluster {row['cluster']}", level="error", expect=[S.running],
                                    error_code="stalled", error_message=message):
                    self.cluster_jobs.stop(row)

            assert self.loop is not None
            self.loop.call_soon_threadsafe(self.loop.call_later, CLUSTER_STACK_DUMP_GRACE_S, self._submit, fail)
            return
        self._write(self.store.worker_finished, job_id, "failed", f"stalled: {alarm.message}")
        pgid = row["worker_pgid"] or row["worker_pid"]

        def kill() -> None:
            current = self.store.get_job_row(job_id)
            if current and current["worker_pid"] == row["worker_pid"] and same_process(
                    row["worker_pid"], row["worker_start_time"]):
                self._kill_group(pgid)

        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.loop.call_later, STACK_DUMP_GRACE_S, self._submit, kill)

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
        ok = self._write(self.store.transition, job_id, new, message, level=level, expect=expect, **fields)
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
