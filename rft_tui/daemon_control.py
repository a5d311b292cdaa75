"""Start and stop the local daemon as a background process (never in-process: the CLI stays light)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from daemon.client import Client, DaemonNotRunning, read_status
from daemon.paths import Paths
from daemon.procs import log_tail, pid_alive

START_TIMEOUT_S = 30.0


def _deadline_wait(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def is_running(paths: Paths) -> bool:
    try:
        read_status(paths)
        return True
    except DaemonNotRunning:
        return False


def start_background(paths: Paths, tcp: str | None = None, log_level: str = "warning") -> int:
    """Spawn `python -m daemon.server` detached; wait until it answers /v1/health. Returns its pid."""
    paths.ensure()
    if is_running(paths):
        return read_status(paths).pid
    cmd = [sys.executable, "-m", "daemon.server", "--home", str(paths.home), "--log-level", log_level]
    if tcp:
        cmd += ["--tcp", tcp]
    log = open(paths.daemon_log, "ab")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, close_fds=True, env={**os.environ, "RFT_HOME": str(paths.home)})
    log.close()

    def healthy() -> bool:
        if proc.poll() is not None:
            return True
        try:
            status = read_status(paths, clean_stale=False)
            with Client.connect(socket=status.socket, timeout=2) as c:
                c.health()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    if not _deadline_wait(healthy, START_TIMEOUT_S) or proc.poll() is not None:
        tail = log_tail(paths.daemon_log, 15)
        raise DaemonNotRunning("The daemon did not start. Last lines of its log "
                               f"({paths.daemon_log}):\n" + "\n".join(tail))
    return proc.pid


def stop(paths: Paths, timeout: float = 10.0) -> bool:
    """Ask politely over the API, wait for the pid, then SIGTERM, then SIGKILL. False if none ran."""
    try:
        status = read_status(paths)
    except DaemonNotRunning:
        return False
    pid = status.pid
    try:
        with Client.connect(socket=status.socket, timeout=5) as c:
            c.shutdown()
    except Exception:  # noqa: BLE001 - fall through to signals
        pass

    def gone() -> bool:
        return not pid_alive(pid)

    for sig, wait in ((None, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
        if _deadline_wait(gone, wait):
            break
    paths.status_file.unlink(missing_ok=True)
    return True
