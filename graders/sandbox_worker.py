"""The python-grader sandbox worker: a long-lived process that runs ONE grader's `grade(sample, item)` calls
(or ONE python tool's `call(arguments, item)` calls: the same sandbox, the same limits).

Run by graders.sandbox as `python -I -B sandbox_worker.py '<json config>'`, normally inside bubblewrap
(namespaces, no capabilities, read-only runtime, seccomp: see graders.sandbox_bwrap). It must not import
the graders package (it runs untrusted code, so it stays small and self-contained). Before any user code
runs it adds the allowed site-packages, sets resource limits (address space = memory limit less the tmpfs
sizes, file size, open files, no core, RLIMIT_NPROC=0), pins itself to one CPU and asks to die with its
parent. The first request binds the worker to one grader key; a request for any other key is refused and
the worker exits, so no state can pass from one grader to another. /tmp and /dev/shm are emptied after
each request.

Wire protocol on the inherited stdin/stdout pipes: frames of a 4-byte big-endian length + UTF-8 JSON.
Parent -> worker: {"key", "source"?, "entry"?: "grade" | "call", "calls": [[sample, item], ...]}.
Worker -> parent: first {"ready": report}, then one {"ok", "value"|"error", "details", "stdout"} per call
(a tool's `value` is the text it returned: a string as is, anything else as JSON).
"""

from __future__ import annotations

import ctypes
import gc
import io
import json
import math
import numbers
import os
import resource
import shutil
import signal
import site
import struct
import sys
import traceback
from typing import Any

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
_BLOCKED_EVENTS = frozenset({
    "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "pty.spawn",
})


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


def _harden(config: dict[str, Any]) -> dict[str, Any]:
    """Confine this process further before any user code runs; return what was applied."""
    libc = ctypes.CDLL(None, use_errno=True)
    sandboxed = config.get("sandbox") == "bubblewrap"
    report: dict[str, Any] = {"sandbox": config.get("sandbox"), "uid": os.getuid(), "pid": os.getpid(),
                    "network_namespace": sandboxed, "nproc_limit": False, "notes": []}
    if not sandboxed:  # RFT_SANDBOX=off: at least try for an empty network namespace
        flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
        if libc.unshare(flags) == 0:
            report["network_namespace"] = True
        else:
            report["notes"].append(f"unshare(network) failed: {os.strerror(ctypes.get_errno())}")
    for path in config.get("site_dirs", []):
        site.addsitedir(path)
    mem = int(config["memory_bytes"])
    report["address_space_bytes"] = mem
    for name, value in (
        ("RLIMIT_AS", mem),
        ("RLIMIT_FSIZE", int(config["file_size_bytes"])),
        ("RLIMIT_NOFILE", int(config["open_files"])),
        ("RLIMIT_CORE", 0),
        ("RLIMIT_NPROC", 0),
    ):
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
            report["nproc_limit"] = report["nproc_limit"] or name == "RLIMIT_NPROC"
        except (ValueError, OSError) as exc:
            report["notes"].append(f"{name}: {exc}")
    try:  # one CPU (OpenAI's limit), spreading workers over the allowed ones
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {allowed[int(config.get("cpu_index", 0)) % len(allowed)]})
        report["cpus"] = 1
    except (AttributeError, OSError) as exc:
        report["notes"].append(f"cpu affinity: {exc}")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if not sandboxed and os.getppid() != int(config.get("parent_pid", os.getppid())):  # parent already gone
        os._exit(0)
    return report


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in _BLOCKED_EVENTS:
        raise PermissionError(f"{event} is not allowed in a python grader")


class Worker:
    """Reads call batches for its one grader, runs them, writes one result frame per call."""

    def __init__(self, req_fd: int, resp_fd: int, config: dict[str, Any]) -> None:
        self.req = os.fdopen(req_fd, "rb", buffering=1 << 16)
        self.resp_fd = resp_fd
        self.cpu_s = float(config["cpu_s"])
        self.output = CappedWriter(int(config["max_output_chars"]))
        self.scratch = [p for p in config.get("scratch", []) if isinstance(p, str)]
        self.key: str | None = None
        self.grade: object = None
        self.entry = "grade"

    def send(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, allow_nan=True).encode("utf-8")
        frame = struct.pack(">I", len(data)) + data
        view = memoryview(frame)
        while view:
            view = view[os.write(self.resp_fd, view):]

    def receive(self) -> dict[str, Any] | None:
        head = self.req.read(4)
        if len(head) < 4:
            return None
        (size,) = struct.unpack(">I", head)
        request: dict[str, Any] = json.loads(self.req.read(size).decode("utf-8"))
        return request

    def load(self, key: str, source: str | None, entry: str = "grade") -> object:
        """Bind this worker to its one grader (or tool) on the first request; its function (or an error string)."""
        if self.key is not None:
            return self.grade
        if source is None:
            return "worker lost the grader source"
        self.key = key
        self.entry = "call" if entry == "call" else "grade"
        tool = self.entry == "call"
        what, signature = ("tool", "call(arguments, item)") if tool else ("grader", "grade(sample, item)")
        namespace: dict[str, Any] = {"__name__": what, "__builtins__": __builtins__}
        try:
            exec(compile(source, f"<{what}>", "exec"), namespace)  # running untrusted code is this process's purpose
            grade = namespace.get(self.entry)
            result: object = grade if callable(grade) else f"the {what} source defines no {signature} function"
        except MemoryError:
            raise
        except BaseException:  # noqa: BLE001 - user code may raise anything, SystemExit included
            result = f"loading the {what} failed:\n" + _tail(traceback.format_exc())
        self.grade = result
        return result

    def run_call(self, grade: object, sample: object, item: object) -> dict[str, Any]:
        if isinstance(grade, str):
            return {"ok": False, "error": "runtime", "details": grade}
        used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        resource.setrlimit(resource.RLIMIT_CPU, (int(used + self.cpu_s) + 1, resource.RLIM_INFINITY))
        try:
            value = grade(sample, item)  # type: ignore[operator]
        except MemoryError:
            raise
        except SystemExit as exc:
            return {"ok": False, "error": "runtime", "details": f"{self.entry}() called sys.exit({exc.code!r})",
                    "stdout": self.output.take()}
        except BaseException as exc:  # noqa: BLE001
            user_frames = exc.__traceback__.tb_next if exc.__traceback__ else None  # not run_call's own frame
            frames = traceback.format_exception(type(exc), exc, user_frames)
            return {"ok": False, "error": "runtime", "details": _tail("".join(frames)),
                    "stdout": self.output.take()}
        if self.entry == "call":
            return _tool_text(value, self.output.take())
        return _check_value(value, self.output.take())

    def serve(self) -> None:
        while True:
            request = self.receive()
            if request is None:
                return
            try:
                if self.key is not None and request.get("key") != self.key:
                    self.send({"ok": False, "error": "fatal", "details": "this worker runs one grader only"})
                    os._exit(4)
                grade = self.load(request["key"], request.get("source"), str(request.get("entry") or "grade"))
                for sample, item in request["calls"]:
                    self.send(self.run_call(grade, sample, item))
            except MemoryError:
                self.grade = None
                gc.collect()
                self.send({"ok": False, "error": "memory", "details": "MemoryError: the grader ran out of memory"})
                os._exit(3)  # a fresh worker replaces this one; the heap may be fragmented
            self.clear_scratch()

    def clear_scratch(self) -> None:
        """Empty the private /tmp and /dev/shm, so a request's files (and their memory) end with it."""
        for directory in self.scratch:
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                except OSError:
                    pass


def _check_value(value: object, stdout: str) -> dict[str, Any]:
    """A finite real number (bool is not one) is a result; anything else is a runtime error saying why."""
    try:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            kind = "bool" if isinstance(value, bool) else type(value).__name__
            shown = repr(value)[:200] if value is not None else "None"
            return {"ok": False, "error": "runtime",
                    "details": f"grade() must return a number, got {kind}: {shown}", "stdout": stdout}
        try:
            number = float(value)
        except OverflowError:
            return {"ok": False, "error": "runtime",
                    "details": f"grade() returned a number too large for a float: {type(value).__name__} of "
                               f"{int(value).bit_length()} bits",  # type: ignore[call-overload]  # Real has __int__
                    "stdout": stdout}
        if not isinstance(number, float) or not math.isfinite(number):
            return {"ok": False, "error": "runtime", "details": f"grade() returned {number}", "stdout": stdout}
        return {"ok": True, "value": number}
    except MemoryError:
        raise
    except BaseException as exc:  # noqa: BLE001 - a user type's __float__ / __repr__ may raise anything
        return {"ok": False, "error": "runtime",
                "details": f"grade() returned a value that is not a usable number ({type(exc).__name__})",
                "stdout": stdout}


def _tool_text(value: object, stdout: str) -> dict[str, Any]:
    """A tool's answer as the text the model will see: a string as is, anything else as JSON."""
    if isinstance(value, str):
        return {"ok": True, "value": value, "stdout": stdout}
    try:
        return {"ok": True, "value": json.dumps(value, ensure_ascii=False, allow_nan=False), "stdout": stdout}
    except MemoryError:
        raise
    except BaseException as exc:  # noqa: BLE001 - a user type's serialisation may raise anything
        return {"ok": False, "error": "runtime", "stdout": stdout,
                "details": f"call() must return a string or a JSON value, got {type(value).__name__} "
                           f"({type(exc).__name__}: {str(exc)[:200]})"}


def _tail(text: str, limit: int = 3000) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


def main() -> None:
    config = json.loads(sys.argv[1])
    req_fd, resp_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    report = _harden(config)
    worker = Worker(req_fd, resp_fd, config)
    sys.stdout = sys.stderr = worker.output
    sys.stdin = io.StringIO()
    sys.addaudithook(_audit)
    worker.send({"ready": report})
    worker.serve()


if __name__ == "__main__":
    main()
