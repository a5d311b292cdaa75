"""`rft-tui --ssh [user@]host[:port]`: forward the remote daemon's Unix socket to a local one with plain `ssh -L`.

No extra server: the remote side is the same daemon (found with `rft-tui daemon status --json`, started
with `rft-tui daemon start --json` when it is not running), reached through OpenSSH's socket forwarding.
Every CLI command and the TUI use it alike. Settings come from flags or `RFT_SSH_*` variables (`SshSettings`).
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from daemon.client import DaemonNotRunning

CONNECT_TIMEOUT_S = 20.0
QUERY_TIMEOUT_S = 60.0
DEFAULT_REMOTE_COMMAND = "rft-tui"
COMMAND_NOT_FOUND = 127  # what a POSIX shell exits with when the command is not on PATH


class SshForwardError(DaemonNotRunning):
    """The remote daemon could not be found, started or forwarded (the message says which step failed)."""


def split_host_port(spec: str) -> tuple[str, int | None]:
    """`[user@]host[:port]` (or `[user@][v6addr]:port`) -> (`[user@]host`, port or None)."""
    if not spec or spec.startswith("-"):
        raise SshForwardError(f"--ssh expects [user@]host[:port], got {spec!r}")
    user, at, rest = spec.rpartition("@")
    prefix = user + at
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else (tail or None)
        return prefix + host, _port(port, spec) if port else None
    if rest.count(":") == 1:
        host, port = rest.split(":")
        return prefix + host, _port(port, spec)
    return spec, None


def _port(raw: str | int, spec: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise SshForwardError(f"--ssh {spec}: the port must be a number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise SshForwardError(f"--ssh {spec}: port {port} is out of range")
    return port


@dataclass(frozen=True)
class SshSettings:
    """How to reach a remote daemon: host, port, extra ssh options, the remote `rft-tui` and its RFT_HOME."""

    target: str
    port: int | None = None
    options: tuple[str, ...] = ()
    remote_command: str = DEFAULT_REMOTE_COMMAND
    remote_home: str | None = None
    ssh: str = field(default_factory=lambda: os.environ.get("RFT_SSH", "ssh"))

    @classmethod
    def parse(cls, spec: str, port: int | None = None, options: str | None = None,
              remote_command: str | None = None, remote_home: str | None = None) -> SshSettings:
        """From `--ssh SPEC` and the other flags (their `RFT_SSH_*` variables are read by click)."""
        target, spec_port = split_host_port(spec)
        if port is not None and spec_port is not None and port != spec_port:
            raise SshForwardError(f"--ssh {spec} and --ssh-port {port} name different ports")
        try:
            opts = tuple(shlex.split(options or ""))
        except ValueError as e:
            raise SshForwardError(f"RFT_SSH_OPTIONS / --ssh-options is not valid shell words: {e}") from None
        return cls(target=target, port=spec_port if spec_port is not None else port, options=opts,
                   remote_command=remote_command or DEFAULT_REMOTE_COMMAND, remote_home=remote_home or None)

    @property
    def base_options(self) -> list[str]:
        """Batch mode (never prompt behind the CLI or inside the TUI), the port, then the user's options."""
        return ["-o", "BatchMode=yes", *(["-p", str(self.port)] if self.port else []), *self.options]

    def remote_argv(self, args: list[str]) -> list[str]:
        """`ssh … host <remote rft-tui> [--home H] ARGS`; our arguments are quoted for the remote shell.

        The remote command is the user's own shell words (`~/venv/bin/rft-tui`, `env X=1 rft-tui`), passed as is.
        """
        home = ["--home", shlex.quote(self.remote_home)] if self.remote_home else []
        return [self.ssh, *self.base_options, self.target, self.remote_command, *home,
                *[shlex.quote(a) for a in args]]

    def not_found_message(self) -> str:
        return (f"`{self.remote_command}` was not found on {self.target}: ssh runs commands with the remote "
                "non-interactive PATH (no ~/.profile or venv activation). Install rft-tui there, or name it with "
                "--remote-command PATH (or RFT_SSH_REMOTE_COMMAND), e.g. --remote-command "
                "'~/rft-tui/.venv/bin/rft-tui'.")


class SshForward:
    """One `ssh -N -L LOCAL:REMOTE host` child process; `start()` returns the local socket path."""

    def __init__(self, target: str | SshSettings, ssh: str | None = None,
                 remote_command: str = DEFAULT_REMOTE_COMMAND) -> None:
        if isinstance(target, str):
            target = SshSettings.parse(target, remote_command=remote_command)
        if ssh:
            target = replace(target, ssh=ssh)
        self.settings = target
        self.target = target.target
        self.ssh = target.ssh
        self.local_dir = Path(tempfile.mkdtemp(prefix="rft-ssh-"))
        os.chmod(self.local_dir, 0o700)
        self.local_socket = str(self.local_dir / "daemon.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    def query_command(self, verb: str) -> list[str]:
        """`ssh host rft-tui daemon <verb> --json` (batch mode: never prompt)."""
        return self.settings.remote_argv(["daemon", verb, "--json"])

    def forward_command(self, remote_socket: str) -> list[str]:
        s = self.settings
        return [self.ssh, "-N", *s.base_options, "-o", "ExitOnForwardFailure=yes",
                "-o", "StreamLocalBindUnlink=yes", "-L", f"{self.local_socket}:{remote_socket}", self.target]

    def _remote_json(self, verb: str) -> dict[str, Any]:
        cmd = self.query_command(verb)
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S,
                                 stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SshForwardError(f"`{shlex.join(cmd)}` failed: {e}") from e
        try:
            answer = json.loads(out.stdout)
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            return answer
        if out.returncode == COMMAND_NOT_FOUND:
            raise SshForwardError(self.settings.not_found_message())
        detail = (out.stderr or out.stdout).strip().splitlines()
        raise SshForwardError(f"`{shlex.join(cmd)}` exited {out.returncode}: "
                              f"{detail[-1] if detail else 'no output'}")

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
        atexit.register(self.stop)  # a CLI command that exits early must not leave the ssh child behind
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
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
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
