"""A warm pool of sandboxed worker processes that run python graders' `grade(sample, item)`.

Each worker runs ONE grader, ever: the pool is keyed by the grader's identity (sha256 of its source
and the limits), a worker is started for a key, loads that source once and is never handed another
key's calls, so nothing one grader does (patched builtins or modules, forged result frames) can reach
another grader's reward. The pool stays warm and bounded: at most `size` live workers in all; when it
is full, the least recently used idle worker of another grader makes room.

Each worker runs under bubblewrap (see graders.sandbox_bwrap); where that is impossible the pool
refuses python graders with one line naming the fix, unless the user set RFT_SANDBOX=off. The parent
enforces the wall-time limit per call (kill + replace the worker), survives broken workers, is safe
to use from several threads, and leaves no orphans (close(), atexit, bwrap's --die-with-parent and
each worker's PR_SET_PDEATHSIG, which is why workers are spawned from one long-lived thread).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import hashlib
import itertools
import json
import math
import os
import queue
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from graders import sandbox_bwrap
from graders.sandbox_bwrap import sandbox_mode

_WORKER_SCRIPT = str(Path(__file__).with_name("sandbox_worker.py"))
_MAX_FRAME = 8 * 1024 * 1024
#: The smallest address space a worker gets once the tmpfs sizes are taken off the memory limit.
_MIN_ADDRESS_SPACE = 96 * 1024**2


@dataclass(frozen=True)
class SandboxLimits:
    """Per-call limits, defaulting to OpenAI's python grader limits (2 min, 2 GB).

    The private /tmp and /dev/shm are tmpfs (memory): their sizes are taken off `memory_bytes`, so
    the worker's address-space limit is memory_bytes - tmp_bytes - shm_bytes.
    """

    wall_time_s: float = 120.0
    memory_bytes: int = 2 * 1024**3
    file_size_bytes: int = 16 * 1024**2
    open_files: int = 256
    max_output_chars: int = 16_000
    startup_timeout_s: float = 60.0
    max_calls_per_worker: int = 1_000_000
    tmp_bytes: int = 64 * 1024**2
    shm_bytes: int = 64 * 1024**2

    @property
    def address_space_bytes(self) -> int:
        """RLIMIT_AS for the worker: the memory limit less what its tmpfs may hold."""
        return max(_MIN_ADDRESS_SPACE, self.memory_bytes - self.tmp_bytes - self.shm_bytes)


def grader_key(source: str, limits: SandboxLimits) -> str:
    """A grader's identity in the pool: its source and the settings it runs under."""
    return _key(source, json.dumps(asdict(limits), sort_keys=True).encode("utf-8"))


def _key(source: str, settings: bytes) -> str:
    return hashlib.sha256(source.encode("utf-8") + b"\0" + settings).hexdigest()


@dataclass
class CallOutcome:
    """What one grade() call produced: a value, or an error kind with details."""

    value: float | None = None
    text: str | None = None  # a tool call's answer (tools return text, graders numbers)
    error: str | None = None  # "runtime" | "server" | "timeout"
    error_type: str | None = None
    details: str | None = None
    stdout: str = ""


@dataclass(eq=False)
class _Spawned:
    proc: subprocess.Popen[bytes]
    key: str
    workdir: str | None
    report: dict[str, Any] = field(default_factory=dict)
    calls: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    loaded: bool = False


class WorkerFailed(Exception):
    """The worker broke (died, timed out, spoke garbage); it must be replaced."""

    def __init__(self, kind: str, error_type: str, details: str) -> None:
        self.kind = kind
        self.error_type = error_type
        self.details = details
        super().__init__(f"{error_type}: {details}")


class _Spawner:
    """One process-lifetime thread that starts every worker, so PR_SET_PDEATHSIG (which fires
    when the *thread* that forked the child exits) only fires when this process dies."""

    _lock = threading.Lock()
    _instance: _Spawner | None = None

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[concurrent.futures.Future[subprocess.Popen[bytes]], dict[str, Any]]] = (
            queue.Queue()
        )
        threading.Thread(target=self._loop, name="rft-grader-spawner", daemon=True).start()

    @classmethod
    def get(cls) -> _Spawner:
        with cls._lock:
            if cls._instance is None or cls._instance._pid != os.getpid():
                cls._instance = cls()
                cls._instance._pid = os.getpid()
            return cls._instance

    _pid: int = 0

    def spawn(self, **popen_kwargs: Any) -> subprocess.Popen[bytes]:
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._requests.put((future, popen_kwargs))
        return future.result()

    def _loop(self) -> None:
        while True:
            future, kwargs = self._requests.get()
            try:
                future.set_result(subprocess.Popen(**kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)


class PythonGraderPool:
    """Warm sandboxed workers, one grader each; `grade(source, calls)` runs each (sample, item), never raises."""

    def __init__(self, size: int | None = None, limits: SandboxLimits | None = None) -> None:
        self.size = max(1, size or os.cpu_count() or 1)
        self.limits = limits or SandboxLimits()
        #: "bubblewrap", "off" (RFT_SANDBOX=off) or "unavailable: <reason and fix>"; probed once per process.
        self.mode = sandbox_mode()
        self._idle: list[_Spawned] = []  # least recently used first
        self._live = 0
        self._cond = threading.Condition()
        self._closed = False
        self._all: set[_Spawned] = set()
        self._cpu = itertools.count()
        self._settings = json.dumps(asdict(self.limits), sort_keys=True).encode("utf-8")
        _POOLS.add(self)
        _remove_stale_workdirs()

    # -- public -----------------------------------------------------------------------------

    def grade(self, source: str, calls: Sequence[tuple[Any, Any]]) -> list[CallOutcome]:
        """Run grade(sample, item) for each call on a worker of this grader, replacing it if it breaks."""
        return self._call_all("python graders", _key(source, self._settings), source, calls)

    def call_tool(self, source: str, calls: Sequence[tuple[Any, Any]], wall_time_s: float | None = None
                  ) -> list[CallOutcome]:
        """Run a python tool's call(arguments, item) for each call, on workers of that tool only (never a
        grader's: the key says which), each call within `wall_time_s`; outcomes carry `text`, never raise."""
        wall = min(wall_time_s or self.limits.wall_time_s, self.limits.wall_time_s)
        return self._call_all("python tools", _key(source, self._settings + b"\0entry=call"), source, calls,
                              entry="call", wall_time_s=wall)

    def _call_all(self, what: str, key: str, source: str, calls: Sequence[tuple[Any, Any]],
                  **run: Any) -> list[CallOutcome]:
        """Every call on workers under `key`, in order: a broken worker is replaced and the rest carry on;
        a worker that cannot start fails the calls left (outcomes, never an exception)."""
        if self.mode.startswith("unavailable"):
            refusal = CallOutcome(error="server", error_type="SandboxUnavailable",
                                  details=f"{what} are refused: the sandbox is {self.mode}")
            return [refusal for _ in calls]
        outcomes: list[CallOutcome] = []
        pending = list(calls)
        while pending:
            try:
                worker = self._acquire(key)
            except WorkerFailed as exc:
                failure = CallOutcome(error="server", error_type=exc.error_type, details=exc.details)
                return outcomes + [failure for _ in pending]
            broken = False
            try:
                done = self._run(worker, source, pending, outcomes, **run)
            except WorkerFailed as exc:
                broken = True
                outcomes.append(CallOutcome(error=exc.kind, error_type=exc.error_type, details=exc.details))
                done = len(outcomes) - (len(calls) - len(pending))
            finally:
                self._release(worker, broken)
            pending = pending[done:]
        return outcomes

    def worker_report(self, source: str = "def grade(sample, item):\n    return 0.0\n") -> dict[str, Any]:
        """The confinement a worker of `source` applied (sandbox, uid, pid, limits), for diagnostics."""
        if self.mode.startswith("unavailable"):
            return {"sandbox": self.mode}
        key = grader_key(source, self.limits)
        worker = self._acquire(key)
        try:
            return dict(worker.report)
        finally:
            self._release(worker, False)

    def worker_pids(self) -> list[int]:
        """Host pids of the live workers' outermost processes (bwrap, or python when the sandbox is off)."""
        with self._cond:
            return [w.proc.pid for w in self._all]

    def close(self) -> None:
        """Kill every worker and remove their directories; the pool cannot be used afterwards."""
        with self._cond:
            self._closed = True
            workers = list(self._all)
            self._idle.clear()
            self._cond.notify_all()
        for worker in workers:
            _kill(worker)

    def __enter__(self) -> PythonGraderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- workers ----------------------------------------------------------------------------

    def _acquire(self, key: str) -> _Spawned:
        """An idle worker of this grader, else a new one (evicting another grader's idle worker if full)."""
        victim: _Spawned | None = None
        with self._cond:
            while True:
                if self._closed:
                    raise WorkerFailed("server", "PoolClosed", "the python grader pool is closed")
                for i in range(len(self._idle) - 1, -1, -1):
                    if self._idle[i].key == key:
                        return self._idle.pop(i)
                if self._live < self.size:
                    self._live += 1
                    break
                if self._idle:  # full: the least recently used idle worker (of another grader) makes room
                    victim = self._idle.pop(0)
                    self._all.discard(victim)
                    break
                self._cond.wait()
        if victim is not None:
            _kill(victim)
        try:
            worker = self._start(key)
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._all.add(worker)
            if self._closed:
                self._all.discard(worker)
                _kill(worker)
                raise WorkerFailed("server", "PoolClosed", "the python grader pool is closed")
        return worker

    def _release(self, worker: _Spawned, broken: bool) -> None:
        retire = broken or worker.calls >= self.limits.max_calls_per_worker or worker.proc.poll() is not None
        with self._cond:
            if retire or self._closed:
                self._all.discard(worker)
                self._live -= 1
            else:
                self._idle.append(worker)
            self._cond.notify()
        if retire or self._closed:
            _kill(worker)

    def _config(self) -> dict[str, Any]:
        sandboxed = self.mode == "bubblewrap"
        return {
            "memory_bytes": self.limits.address_space_bytes if sandboxed else self.limits.memory_bytes,
            "file_size_bytes": self.limits.file_size_bytes,
            "open_files": self.limits.open_files,
            "max_output_chars": self.limits.max_output_chars,
            "cpu_s": self.limits.wall_time_s,
            "cpu_index": next(self._cpu),
            "sandbox": self.mode,
            "site_dirs": sandbox_bwrap.site_dirs() if sandboxed else [],
            "scratch": ["/tmp", "/dev/shm"] if sandboxed else [],
            "parent_pid": os.getpid(),
        }

    def _start(self, key: str) -> _Spawned:
        config = json.dumps(self._config())
        workdir: str | None = None
        seccomp: int | None = None
        try:
            if self.mode == "bubblewrap":
                seccomp = sandbox_bwrap.seccomp_fd()
                bwrap = sandbox_bwrap.find_bwrap() or "bwrap"
                args = sandbox_bwrap.worker_command(bwrap, seccomp, self.limits.tmp_bytes, self.limits.shm_bytes,
                                                    config)
                popen: dict[str, Any] = {"args": args, "cwd": "/", "pass_fds": (seccomp,)}
            else:  # RFT_SANDBOX=off: limits only, said everywhere
                workdir = tempfile.mkdtemp(prefix=f"rft-grader-{os.getpid()}-")
                popen = {"args": [sys.executable, "-I", "-B", _WORKER_SCRIPT, config], "cwd": workdir}
            proc = _Spawner.get().spawn(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        env={}, close_fds=True, start_new_session=True, **popen)
        except (OSError, ValueError) as exc:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)
            raise WorkerFailed("server", "SpawnFailed", str(exc)) from None
        finally:
            if seccomp is not None:
                os.close(seccomp)
        worker = _Spawned(proc=proc, key=key, workdir=workdir)
        try:
            hello = _read_frame(worker, time.monotonic() + self.limits.startup_timeout_s)
        except WorkerFailed:
            _kill(worker)
            raise
        worker.report = hello.get("ready", {}) if isinstance(hello, dict) else {}
        return worker

    def _run(self, worker: _Spawned, source: str, calls: list[tuple[Any, Any]],
             outcomes: list[CallOutcome], entry: str = "grade", wall_time_s: float | None = None) -> int:
        """Send the calls, read one frame per call; return how many completed."""
        wall = wall_time_s or self.limits.wall_time_s
        request: dict[str, Any] = {"key": worker.key, "calls": [[sample, item] for sample, item in calls]}
        if entry != "grade":
            request["entry"] = entry
        if not worker.loaded:
            request["source"] = source
        _write_frame(worker, request, time.monotonic() + wall)
        worker.loaded = True
        for _ in calls:
            frame = _read_frame(worker, time.monotonic() + wall)
            worker.calls += 1
            outcome = _tool_outcome(frame) if entry == "call" else _outcome(frame)
            if outcome.error == "server":  # the worker reported a fatal error and is exiting
                raise WorkerFailed("server", outcome.error_type or "WorkerError", outcome.details or "")
            outcomes.append(outcome)
        return len(calls)


def _outcome(frame: Any) -> CallOutcome:
    if not isinstance(frame, dict):
        raise WorkerFailed("server", "ProtocolError", "the worker sent a malformed result")
    raw_stdout = frame.get("stdout")
    stdout = raw_stdout if isinstance(raw_stdout, str) else ""
    if frame.get("ok") is True:
        value = frame.get("value")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value) if isinstance(value, float) or abs(value) < 2**1000 else math.inf
            if math.isfinite(number):
                return CallOutcome(value=number, stdout=stdout)
        raise WorkerFailed("server", "ProtocolError", "the worker sent a non-numeric or non-finite value")
    details = frame.get("details") if isinstance(frame.get("details"), str) else ""
    if frame.get("error") == "memory":
        return CallOutcome(error="server", error_type="MemoryError", details=details, stdout=stdout)
    if frame.get("error") == "fatal":
        return CallOutcome(error="server", error_type="WorkerError", details=details, stdout=stdout)
    return CallOutcome(error="runtime", error_type="RuntimeError", details=details, stdout=stdout)


def _tool_outcome(frame: Any) -> CallOutcome:
    """A tool call's frame: its text, or the error (the same kinds as a grader's)."""
    if isinstance(frame, dict) and frame.get("ok") is True:
        value = frame.get("value")
        if not isinstance(value, str):
            raise WorkerFailed("server", "ProtocolError", "the worker sent a tool answer that is not text")
        stdout = frame.get("stdout")
        return CallOutcome(text=value, stdout=stdout if isinstance(stdout, str) else "")
    return _outcome(frame)


def _write_frame(worker: _Spawned, obj: Any, deadline: float) -> None:
    data = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")
    if len(data) > _MAX_FRAME * 4:
        raise WorkerFailed("server", "RequestTooLarge", f"{len(data)} bytes")
    assert worker.proc.stdin is not None
    fd = worker.proc.stdin.fileno()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerFailed("timeout", "Timeout", "the worker did not accept the request in time")
        _, writable, _ = select.select([], [fd], [], remaining)
        if writable:
            try:
                view = view[os.write(fd, view[:65536]):]
            except (BrokenPipeError, OSError) as exc:
                raise WorkerFailed("server", "WorkerDied", _death(worker, str(exc))) from None


def _read_frame(worker: _Spawned, deadline: float) -> Any:
    assert worker.proc.stdout is not None
    fd = worker.proc.stdout.fileno()
    buf = worker.buffer
    while True:
        if len(buf) >= 4:
            (size,) = struct.unpack(">I", buf[:4])
            if size > _MAX_FRAME:
                raise WorkerFailed("server", "ProtocolError", f"the worker sent a {size}-byte frame")
            if len(buf) >= 4 + size:
                data = bytes(buf[4:4 + size])
                del buf[:4 + size]
                try:
                    return json.loads(data)
                except ValueError:
                    raise WorkerFailed("server", "ProtocolError", "the worker sent invalid JSON") from None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerFailed("timeout", "Timeout", "the grader did not return within the wall-time limit")
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerFailed("server", "WorkerDied", _death(worker, "the worker exited"))
            buf += chunk


def _death(worker: _Spawned, fallback: str) -> str:
    try:
        code = worker.proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        return fallback
    if code > 128 and worker.workdir is None:  # bwrap reports a child killed by signal N as 128 + N
        code = 128 - code
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"the worker was killed by {name} (memory, CPU or file-size limit?)"
    return f"the worker exited with status {code}"


def _kill(worker: _Spawned) -> None:
    proc = worker.proc
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    if worker.workdir:
        shutil.rmtree(worker.workdir, ignore_errors=True)


def _remove_stale_workdirs() -> None:
    """Remove worker directories left by processes that died without closing their pool."""
    for path in Path(tempfile.gettempdir()).glob("rft-grader-*-*"):
        owner = path.name.split("-")[2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(path, ignore_errors=True)


def uses_python(spec: Any) -> bool:
    """True if a grader spec (OpenAI JSON, or a parsed spec) runs python code anywhere in it."""
    if hasattr(spec, "model_dump"):
        spec = spec.model_dump()
    if isinstance(spec, dict):
        return spec.get("type") == "python" or any(uses_python(v) for v in spec.values())
    if isinstance(spec, list):
        return any(uses_python(v) for v in spec)
    return False


def sandbox_warning(spec: Any) -> str | None:
    """One line to show where a grader's python code runs without the sandbox (None when sandboxed)."""
    if not uses_python(spec):
        return None
    mode = sandbox_mode()
    if mode == "off":
        return "Python grader sandbox is OFF (RFT_SANDBOX=off): grader code runs with this user's access"
    if mode != "bubblewrap":
        return f"Python graders will be refused: the sandbox is {mode}"
    return None


_POOLS: weakref.WeakSet[PythonGraderPool] = weakref.WeakSet()
_DEFAULT_LOCK = threading.Lock()
_DEFAULT: PythonGraderPool | None = None


def default_pool() -> PythonGraderPool:
    """The process-wide pool (one worker per CPU), created on first use."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None or _DEFAULT._closed:
            _DEFAULT = PythonGraderPool()
        return _DEFAULT


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()

