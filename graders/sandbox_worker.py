"""The python-grader sandbox worker: a long-lived process that runs `grade(sample, item)` calls.

Run as `python -I sandbox_worker.py '<json limits>'` by graders.sandbox; it must not import the
graders package (it runs untrusted code, so it stays small and self-contained). Hardening happens
before any user code runs: a new network namespace, resource limits, and (as root) a switch to the
`nobody` user keeping only CAP_DAC_READ_SEARCH so RLIMIT_NPROC=0 applies and fork/threads fail.

Wire protocol on the inherited stdin/stdout pipes: frames of a 4-byte big-endian length + UTF-8 JSON.
Parent -> worker: {"key", "source"?, "calls": [[sample, item], ...], "cpu_s"}.
Worker -> parent: first {"ready": report}, then one {"ok", "value"|"error", "details", "stdout"} per call.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import io
import json
import math
import numbers
import os
import resource
import signal
import struct
import sys
import traceback

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_DAC_READ_SEARCH = 2
NOBODY = 65534
_BLOCKED_EVENTS = frozenset({
    "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "pty.spawn",
})


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class CappedWriter(io.TextIOBase):
    """A stdout/stderr replacement that keeps the first `cap` characters and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.cap - self.size
        if room > 0:
            piece = text[:room]
            self.parts.append(piece)
            self.size += len(piece)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def writable(self) -> bool:
        return True

    def take(self) -> str:
        text = "".join(self.parts)
        if self.dropped:
            text += f"\n[... {self.dropped} more characters dropped]"
        self.parts, self.size, self.dropped = [], 0, 0
        return text


def _harden(limits: dict, parent_pid: int) -> dict:
    """Isolate this process before any user code runs; return what was applied."""
    libc = ctypes.CDLL(None, use_errno=True)
    report: dict = {"network_namespace": False, "uid": os.getuid(), "nproc_limit": False, "notes": []}
    is_root = os.geteuid() == 0
    # 1. No network: an empty network namespace (only a down loopback).
    flags = CLONE_NEWNET if is_root else CLONE_NEWUSER | CLONE_NEWNET
    if libc.unshare(flags) == 0:
        report["network_namespace"] = True
    else:
        report["notes"].append(f"unshare(network) failed: {os.strerror(ctypes.get_errno())}; sockets blocked by audit hook only")
    # 2. Resource limits.
    mem = int(limits["memory_bytes"])
    for name, value in (
        ("RLIMIT_AS", mem),
        ("RLIMIT_FSIZE", int(limits["file_size_bytes"])),
        ("RLIMIT_NOFILE", int(limits["open_files"])),
        ("RLIMIT_CORE", 0),
    ):
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
        except (ValueError, OSError) as exc:
            report["notes"].append(f"{name}: {exc}")
    # 2b. One CPU (OpenAI's limit): pin to a single core, spreading workers over the allowed ones.
    try:
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {allowed[os.getpid() % len(allowed)]})
        report["cpus"] = 1
    except (AttributeError, OSError) as exc:
        report["notes"].append(f"cpu affinity: {exc}")
    # 3. No new processes or threads: RLIMIT_NPROC=0 (not enforced for root, hence the user switch).
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        report["nproc_limit"] = True
    except (ValueError, OSError) as exc:
        report["notes"].append(f"RLIMIT_NPROC: {exc}")
    if is_root:
        try:
            _drop_root(libc)
            report["uid"] = os.getuid()
        except OSError as exc:
            report["notes"].append(f"could not drop root: {exc}; fork is blocked only by the audit hook")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    # 4. Die with the parent (set after the credential change, which clears it).
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(0)
    return report


def _drop_root(libc: ctypes.CDLL) -> None:
    """Become `nobody`, keeping only CAP_DAC_READ_SEARCH so the interpreter's files stay readable."""
    for cap in range(64):
        if cap != CAP_DAC_READ_SEARCH:
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = 1 << CAP_DAC_READ_SEARCH
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _audit(event: str, args: tuple) -> None:
    if event in _BLOCKED_EVENTS:
        raise PermissionError(f"{event} is not allowed in a python grader")


class Worker:
    """Reads call batches, runs them, writes one result frame per call."""

    def __init__(self, req_fd: int, resp_fd: int, limits: dict) -> None:
        self.req = os.fdopen(req_fd, "rb", buffering=1 << 16)
        self.resp_fd = resp_fd
        self.cpu_s = float(limits["cpu_s"])
        self.output = CappedWriter(int(limits["max_output_chars"]))
        self.graders: dict[str, object] = {}

    def send(self, obj: dict) -> None:
        data = json.dumps(obj, allow_nan=True).encode("utf-8")
        frame = struct.pack(">I", len(data)) + data
        view = memoryview(frame)
        while view:
            view = view[os.write(self.resp_fd, view):]

    def receive(self) -> dict | None:
        head = self.req.read(4)
        if len(head) < 4:
            return None
        (size,) = struct.unpack(">I", head)
        return json.loads(self.req.read(size).decode("utf-8"))

    def load(self, key: str, source: str | None) -> object:
        """The cached `grade` function for a source (or an error string)."""
        if key in self.graders:
            return self.graders[key]
        if source is None:
            return "worker lost the grader source"
        if hashlib.sha256(source.encode("utf-8")).hexdigest() != key:
            return "grader source does not match its key"
        namespace: dict = {"__name__": "grader", "__builtins__": __builtins__}
        try:
            exec(compile(source, "<grader>", "exec"), namespace)  # noqa: S102 - the sandbox's purpose
            grade = namespace.get("grade")
            result: object = grade if callable(grade) else "the grader source defines no grade(sample, item) function"
        except MemoryError:
            raise
        except BaseException:  # noqa: BLE001 - user code may raise anything, SystemExit included
            result = "loading the grader failed:\n" + _tail(traceback.format_exc())
        if len(self.graders) >= 16:
            self.graders.pop(next(iter(self.graders)))
        self.graders[key] = result
        return result

    def run_call(self, grade: object, sample: object, item: object) -> dict:
        if isinstance(grade, str):
            return {"ok": False, "error": "runtime", "details": grade}
        used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        resource.setrlimit(resource.RLIMIT_CPU, (int(used + self.cpu_s) + 1, resource.RLIM_INFINITY))
        try:
            value = grade(sample, item)  # type: ignore[operator]
        except MemoryError:
            raise
        except SystemExit as exc:
            return {"ok": False, "error": "runtime", "details": f"grade() called sys.exit({exc.code!r})",
                    "stdout": self.output.take()}
        except BaseException as exc:  # noqa: BLE001
            frames = traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
            return {"ok": False, "error": "runtime", "details": _tail("".join(frames)),
                    "stdout": self.output.take()}
        return _check_value(value, self.output.take())

    def serve(self) -> None:
        while True:
            request = self.receive()
            if request is None:
                return
            try:
                grade = self.load(request["key"], request.get("source"))
                for sample, item in request["calls"]:
                    self.send(self.run_call(grade, sample, item))
            except MemoryError:
                self.graders.clear()
                gc.collect()
                self.send({"ok": False, "error": "memory", "details": "MemoryError: the grader ran out of memory"})
                os._exit(3)  # a fresh worker replaces this one; the heap may be fragmented


def _check_value(value: object, stdout: str) -> dict:
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isfinite(number):
            return {"ok": True, "value": number}
        return {"ok": False, "error": "runtime", "details": f"grade() returned {number}", "stdout": stdout}
    shown = repr(value)[:200] if value is not None else "None"
    return {"ok": False, "error": "runtime",
            "details": f"grade() must return a number, got {type(value).__name__}: {shown}", "stdout": stdout}


def _tail(text: str, limit: int = 3000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def main() -> None:
    limits = json.loads(sys.argv[1])
    req_fd, resp_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    report = _harden(limits, int(limits["parent_pid"]))
    worker = Worker(req_fd, resp_fd, limits)
    sys.stdout = sys.stderr = worker.output  # type: ignore[assignment]
    sys.stdin = io.StringIO()
    sys.addaudithook(_audit)
    worker.send({"ready": report})
    worker.serve()


if __name__ == "__main__":
    main()
