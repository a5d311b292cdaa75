"""What the daemon and a worker agree on: the worker's command line, control signals, the log's attempt header.

Standard library only, so the scheduler can start and signal workers without importing the worker's modules,
and a worker can install its signal handlers before it imports anything heavy (torch takes seconds to import;
a pause that arrives meanwhile must not kill it).
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Signals the daemon sends a worker's process group.
CANCEL_SIGNAL = signal.SIGTERM
PAUSE_SIGNAL = signal.SIGUSR1
#: The daemon's `stalled` alarm: every thread of every rank writes its stack into the job log (faulthandler).
STACKS_SIGNAL = signal.SIGUSR2


def dump_stacks(reason: str) -> int:
    """Write every thread's stack of this process to stderr (the job log), and have the other ranks this
    process's torchrun started (same parent, same TORCHELASTIC_RUN_ID and RFT_JOB_ID) write theirs: a cluster
    worker's answer to the daemon's stack request, which cannot signal a process on another machine. Returns
    how many other ranks were signalled."""
    print(f"[stall] {reason}: every thread's stack follows", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    run_id, job_id = os.environ.get("TORCHELASTIC_RUN_ID"), os.environ.get("RFT_JOB_ID")
    if not run_id or not job_id:
        return 0
    from daemon.procs import parent_pid  # here, not at import: this module's imports stay the standard library's

    wanted = {f"TORCHELASTIC_RUN_ID={run_id}".encode(), f"RFT_JOB_ID={job_id}".encode()}
    signalled = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid() or parent_pid(int(entry.name)) != os.getppid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if not wanted <= set(f.read().split(b"\0")):
                    continue
            os.kill(int(entry.name), STACKS_SIGNAL)
            signalled += 1
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return signalled


DEFAULT_WORKER_MODULE = "daemon.worker"
# Each worker attempt starts its section of the job log with this line (so a failure quotes only its own lines).
ATTEMPT_HEADER = "=== rft-tui worker attempt "


def worker_module() -> str:
    """`RFT_WORKER_MODULE` lets the foundation tests run a small worker that reports the same way."""
    return os.environ.get("RFT_WORKER_MODULE") or DEFAULT_WORKER_MODULE


def worker_python() -> str:
    """The interpreter that runs workers and the torch helpers (pre-flight, export, doctor's torch probe).

    The daemon's own: the GPU stack is the `[gpu]` extra of the same environment (docs/gpu.md).
    `RFT_WORKER_PYTHON` names another interpreter, for a worker environment kept apart on purpose.
    """
    return os.environ.get("RFT_WORKER_PYTHON") or sys.executable


def num_processes(job_row: dict[str, Any]) -> int:
    try:
        resolved = json.loads(job_row.get("resolved_hyperparameters") or "null") or {}
    except ValueError:
        resolved = {}
    n = resolved.get("num_processes", 1)
    return n if isinstance(n, int) and n > 0 else 1


def worker_command(job_row: dict[str, Any]) -> list[str]:
    """`python -m daemon.worker JOB_ID`, or `torchrun --nproc_per_node N -m daemon.worker JOB_ID`."""
    job_id = job_row["id"]
    n = num_processes(job_row)
    if n == 1:
        return [worker_python(), "-m", worker_module(), job_id]
    return [worker_python(), "-m", "daemon.worker.torchrun", "--standalone", f"--nproc_per_node={n}",
            "-m", worker_module(), job_id]


# A worker that reports over the daemon's API instead of opening its store (cluster executors; issue 12).
REPORT_URL_ENV = "RFT_REPORT_URL"  # the daemon's TCP base URL, e.g. http://workstation:8765
REPORT_TOKEN_ENV = "RFT_REPORT_TOKEN"  # the job's own reporting token (Store.mint_job_token)
WORK_DIR_ENV = "RFT_WORK_DIR"  # scratch: report journal, saved spec, checkpoints before upload (default: cwd)
FILES_DIR_ENV = "RFT_FILES_DIR"  # where the job's dataset files were shipped (by their stored file names)
CHECKPOINT_STORAGE_ENV = "RFT_CHECKPOINT_STORAGE"  # a shared path or fsspec URL for checkpoints (default: scratch)
FILES_URL_ENV = "RFT_FILES_URL"  # URL storage: where the job's dataset files were uploaded (the worker downloads)
JOURNAL_URL_ENV = "RFT_JOURNAL_URL"  # URL storage: where rank 0 uploads its report journal if records stay undelivered


def http_worker_env(base: dict[str, str], job_id: str, url: str, token: str, work_dir: str,
                    files_dir: str | None = None, checkpoint_storage: str | None = None) -> dict[str, str]:
    """The environment of a worker that reports over HTTP: no RFT_HOME (it never sees the daemon's store)."""
    env = {k: v for k, v in base.items() if k != "RFT_HOME"}
    env.update({REPORT_URL_ENV: url, REPORT_TOKEN_ENV: token, WORK_DIR_ENV: work_dir, "RFT_JOB_ID": job_id,
                "PYTHONUNBUFFERED": "1"})
    if files_dir:
        env[FILES_DIR_ENV] = files_dir
    if checkpoint_storage:
        env[CHECKPOINT_STORAGE_ENV] = checkpoint_storage
    return env


@contextmanager
def pause_signal_held() -> Iterator[None]:
    """Start a worker with the pause signal blocked: a pause before its handler exists stays pending, not fatal.

    The default action of SIGUSR1 is to terminate, and a worker needs a moment (the interpreter, our imports)
    before its handler is installed. A blocked signal is inherited across fork and exec and stays pending;
    `ControlFlags.install` unblocks it once the handler is in place, so the pause is delivered then.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {PAUSE_SIGNAL})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class StopBeforeTraining(BaseException):
    """Raised by the control signal handlers while the worker still starts up: there is nothing to save yet.

    A BaseException (like KeyboardInterrupt), so library code that catches Exception does not swallow it.
    """

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class ControlFlags:
    """Cancel/pause requests, set from signal handlers; read by the training loop at step boundaries.

    With `stop_while_starting`, a request that arrives before `training_started()` raises StopBeforeTraining
    in the main thread, so a pause or cancel during the worker's start-up (imports, model loading) takes
    effect at once instead of after the first training step.
    """

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.pause = threading.Event()
        self.starting = False
        # set when a handler raised StopBeforeTraining: whatever exception start-up then ends with (a C
        # extension's init turns it into "ImportError: initialization failed"), the cause is this stop
        self.interrupted: str | None = None

    def install(self, stop_while_starting: bool = False) -> ControlFlags:
        self.starting = stop_while_starting
        signal.signal(CANCEL_SIGNAL, self._on_cancel)
        signal.signal(signal.SIGINT, self._on_cancel)
        signal.signal(PAUSE_SIGNAL, self._on_pause)
        # a C-level handler: it dumps every thread's stack even while the main thread is stuck in C code
        faulthandler.register(STACKS_SIGNAL, file=sys.stderr, all_threads=True, chain=False)
        # the daemon starts workers with the pause signal blocked (pause_signal_held): deliver any pending one now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {PAUSE_SIGNAL})
        return self

    def training_started(self) -> None:
        """From here on a request only sets a flag; the trainer stops at the next step boundary."""
        self.starting = False

    def _on_cancel(self, *_: Any) -> None:
        self.cancel.set()
        self._stop_now("cancelled")

    def _on_pause(self, *_: Any) -> None:
        self.pause.set()
        self._stop_now("paused")

    def _stop_now(self, outcome: str) -> None:
        if self.starting:
            self.starting = False  # once: the worker's clean-up must not be interrupted again
            self.interrupted = outcome
            raise StopBeforeTraining(outcome)

    def requested(self) -> str | None:
        """'cancelled', 'paused' or None (cancel wins over pause)."""
        return "cancelled" if self.cancel.is_set() else "paused" if self.pause.is_set() else None

    @property
    def stop_requested(self) -> bool:
        return self.cancel.is_set() or self.pause.is_set()
