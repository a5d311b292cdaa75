"""`rft-tui --ssh [user@]host`: forward the remote daemon's Unix socket to a local one with plain `ssh -L`.

No extra server: the remote side is the same daemon (found with `rft-tui daemon status --json`, started
with `rft-tui daemon start --json` when it is not running), reached through OpenSSH's socket forwarding.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from daemon.client import DaemonNotRunning

CONNECT_TIMEOUT_S = 20.0


class SshForwardError(DaemonNotRunning):
    """The remote daemon could not be found, started or forwarded (the message says which step failed)."""


class SshForward:
    """One `ssh -N -L LOCAL:REMOTE host` child process; `start()` returns the local socket path."""

    def __init__(self, target: str, ssh: str | None = None, remote_command: str = "rft-tui") -> None:
        if not target or target.startswith("-"):
            raise SshForwardError(f"--ssh expects [user@]host, got {target!r}")
        self.target = target
        self.ssh = ssh or os.environ.get("RFT_SSH", "ssh")
        self.remote_command = remote_command
        self.local_dir = Path(tempfile.mkdtemp(prefix="rft-ssh-"))
        os.chmod(self.local_dir, 0o700)
        self.local_socket = str(self.local_dir / "daemon.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    def query_command(self, verb: str) -> list[str]:
        """`ssh host rft-tui daemon <verb> --json` (batch mode: never prompt inside the TUI)."""
        return [self.ssh, "-o", "BatchMode=yes", self.target, *shlex.split(self.remote_command), "daemon", verb,
                "--json"]

    def forward_command(self, remote_socket: str) -> list[str]:
        return [self.ssh, "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
                "-o", "StreamLocalBindUnlink=yes", "-L", f"{self.local_socket}:{remote_socket}", self.target]

    def _remote_json(self, verb: str) -> dict:
        cmd = self.query_command(verb)
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SshForwardError(f"`{shlex.join(cmd)}` failed: {e}") from e
        try:
            return json.loads(out.stdout)
        except ValueError:
            detail = (out.stderr or out.stdout).strip().splitlines()
            raise SshForwardError(f"`{shlex.join(cmd)}` exited {out.returncode}: "
                                  f"{detail[-1] if detail else 'no output'}") from None

    def remote_socket(self) -> str:
        """The remote daemon's socket; starts the remote daemon if none runs."""
        status = self._remote_json("status")
        if status.get("running") and status.get("socket"):
            return str(status["socket"])
        started = self._remote_json("start")
        if not started.get("socket"):
            raise SshForwardError(f"The remote daemon on {self.target} did not report a socket: {started}")
        return str(started["socket"])

    def start(self, timeout: float = CONNECT_TIMEOUT_S) -> str:
        remote = self.remote_socket()
        self.proc = subprocess.Popen(self.forward_command(remote), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace").strip()
                raise SshForwardError(f"ssh forwarding to {self.target}:{remote} exited "
                                      f"{self.proc.returncode}: {err or 'no message'}")
            if _connectable(self.local_socket):
                return self.local_socket
            time.sleep(0.05)
        self.stop()
        raise SshForwardError(f"ssh did not open {self.local_socket} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        Path(self.local_socket).unlink(missing_ok=True)
        try:
            self.local_dir.rmdir()
        except OSError:
            pass


def _connectable(path: str) -> bool:
    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
