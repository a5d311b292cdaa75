"""A real daemon process on a temp RFT_HOME, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daemon.client import AsyncClient, Client, DaemonError, read_status
from daemon.paths import Paths

REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate` until it returns a truthy value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep polling, report the last failure
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}"
                       + (f" (last error: {last_exc!r})" if last_exc else ""))


class DaemonProcess:
    """`python -m daemon.server --home H` as a child process, with helpers to kill and restart it."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, tcp: str | None = None) -> None:
        self.home = Path(home)
        self.paths = Paths.resolve(home)
        self.extra_env = dict(env or {})
        self.tcp = tcp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "RFT_HOME": str(self.home), "PYTHONPATH": pythonpath, **self.extra_env}

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        self.paths.ensure()
        cmd = [sys.executable, "-m", "daemon.server", "--home", str(self.home)]
        if self.tcp:
            cmd += ["--tcp", self.tcp]
        log = open(self.paths.daemon_log, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                     start_new_session=True)
        log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("daemon exited:\n" + self.paths.daemon_log.read_text(errors="replace")[-3000:])
            st = read_status(self.paths, clean_stale=False)
            with Client.connect(socket=st.socket, timeout=2) as c:
                return c.health().pid == self.proc.pid  # type: ignore[union-attr]

        wait_until(up, timeout, what="the daemon to answer /v1/health")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def socket(self) -> str:
        return str(self.paths.socket)

    def client(self, timeout: float = 60.0) -> Client:
        return Client.connect(socket=self.socket, timeout=timeout)

    def async_client(self, timeout: float = 60.0) -> AsyncClient:
        return AsyncClient.connect(socket=self.socket, timeout=timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            with self.client(timeout=5) as c:
                c.shutdown()
            self.proc.wait(timeout=15)
        except (DaemonError, subprocess.TimeoutExpired, OSError):  # no answer: kill it
            self.kill(signal.SIGKILL)

    def log(self) -> str:
        return self.paths.daemon_log.read_text(errors="replace")


def kill_job_workers(paths: Paths) -> None:
    """Leave no worker behind after a test (they are in their own process groups by design)."""
    import sqlite3

    if not paths.db.exists():
        return
    conn = sqlite3.connect(str(paths.db), timeout=30)
    try:
        rows = conn.execute("SELECT worker_pgid FROM jobs WHERE worker_pgid IS NOT NULL").fetchall()
    except sqlite3.Error:
        rows = []
    finally:
        conn.close()
    for (pgid,) in rows:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def module_daemon(prefix: str, env: dict[str, str]) -> Iterator[DaemonProcess]:
    """A daemon on a fresh RFT_HOME for a module-scoped fixture (`yield from` it): started, then stopped, its
    job workers killed and its home removed."""
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix=prefix))
    d = DaemonProcess(home, env={"RFT_DEVICE": "cpu", **env})
    try:
        yield d.start()
    finally:
        d.stop()
        kill_job_workers(d.paths)
        shutil.rmtree(home, ignore_errors=True)
