"""The CLI's shared context: global options and the one way commands reach the daemon (local, --url, --ssh).

Its own module so that `rft_tui.cli` imports the commands and the commands import this, never each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from daemon.client import Client, Endpoint
from daemon.paths import Paths

if TYPE_CHECKING:
    from rft_tui.ssh_forward import SshForward, SshSettings


@dataclass
class CliContext:
    """Global options, and the one way commands get a client (starting the daemon when needed)."""

    home: str | None
    socket: str | None
    url: str | None
    token: str | None
    ssh: SshSettings | None = None
    _forward: SshForward | None = field(default=None, repr=False)

    @property
    def paths(self) -> Paths:
        return Paths.resolve(self.home)

    @property
    def remote(self) -> bool:
        """The daemon may run on another machine: send file bytes, never local paths."""
        return bool(self.ssh or self.url)

    @property
    def label(self) -> str:
        """Where the daemon is, for headers and messages."""
        if self.ssh:
            return f"ssh {self.ssh.target}"
        return self.url or self.socket or str(self.paths.home)

    def endpoint(self, autostart: bool = True) -> Endpoint:
        """The daemon's endpoint: the SSH forward's local socket, --socket/--url, or the local daemon."""
        if self.ssh:
            return Endpoint(socket=self.ssh_forward())
        if self.socket or self.url:
            return Endpoint.discover(socket=self.socket, url=self.url, token=self.token)
        if autostart:
            from rft_tui.daemon_control import start_background

            start_background(self.paths)
        return Endpoint.discover(home=self.paths.home)

    def ssh_forward(self) -> str:
        """Open the SSH forward once per process (closed when the command ends); its local socket."""
        if self._forward is None:
            from rft_tui.ssh_forward import SshForward

            assert self.ssh is not None
            forward = SshForward(self.ssh)
            try:
                forward.start()
            except BaseException:
                forward.stop()
                raise
            self._forward = forward
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.find_root().call_on_close(self.close)
        return self._forward.local_socket

    def client(self, autostart: bool = True, timeout: float = 60.0) -> Client:
        return Client(self.endpoint(autostart), timeout=timeout)

    def close(self) -> None:
        if self._forward is not None:
            self._forward.stop()
            self._forward = None


pass_ctx = click.make_pass_decorator(CliContext)
