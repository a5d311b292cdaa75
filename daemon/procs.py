"""Process liveness and log tails, shared by the daemon, its client and the CLI (standard library only).

A pid alone is not a process: pids are reused, so "is it still the one we started" compares the start time
the kernel reports (`/proc/PID/stat`, field 22) with the one recorded. A zombie counts as gone.
"""

from __future__ import annotations

import os
from pathlib import Path

TAIL_BYTES = 64 * 1024
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


_BOOT_TIME = _boot_time()


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may hold spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except (OSError, ValueError):
        return None
    return raw[raw.rfind(")") + 2:].split()


def process_start_time(pid: int) -> float | None:
    """When `pid` started (seconds since the epoch, like psutil's create_time), or None if there is none."""
    if pid <= 0:
        return None
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20 or _BOOT_TIME is None:
        return None
    return _BOOT_TIME + int(fields[19]) / _CLOCK_TICKS  # field 22 overall: starttime in clock ticks


def parent_pid(pid: int) -> int | None:
    """`pid`'s parent, or None if there is no such process."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields and len(fields) > 1 else None  # field 4 overall: ppid


def is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] in ("Z", "X")


def same_process(pid: int | None, start_time: float | None) -> bool:
    """True if `pid` is alive, not a zombie, and is the process that started at `start_time` (no pid reuse)."""
    if not pid or start_time is None:
        return False
    actual = process_start_time(pid)
    return actual is not None and abs(actual - start_time) < 1.0 and not is_zombie(pid)


def pid_alive(pid: int, start_time: float | None = None) -> bool:
    """`pid` exists (and, when `start_time` is known, is the same process); another user's process counts."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if is_zombie(pid):
        return False
    if start_time is None:
        return True
    actual = process_start_time(pid)
    return actual is None or abs(actual - start_time) < 1.0  # unreadable /proc: trust the pid


def log_tail(path: str | os.PathLike[str], lines: int) -> list[str]:
    """The last `lines` lines of a log (reads at most its last 64 KiB per 1,000 lines asked); [] if unreadable."""
    budget = TAIL_BYTES * max(1, -(-lines // 1000))
    try:
        with open(Path(path), "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - budget))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    if size > budget:
        text = text.split("\n", 1)[-1]  # drop the partial first line
    return text.splitlines()[-lines:]
