"""`rft-tui` with no command: find (or start, or SSH-forward) the daemon, then run the Textual app."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from daemon.client import AsyncClient, DaemonNotRunning, Endpoint

if TYPE_CHECKING:
    from rft_tui.cli import CliContext


def resolve_endpoint(cli_ctx: "CliContext", ssh: str | None = None) -> tuple[Endpoint, str, object | None]:
    """Where the TUI connects, a label for the header, and the SSH forward to stop afterwards (if any)."""
    if ssh:
        from rft_tui.ssh_forward import SshForward

        forward = SshForward(ssh)
        try:
            local = forward.start()
        except BaseException:
            forward.stop()
            raise
        return Endpoint(socket=local), f"ssh {ssh}", forward
    if cli_ctx.socket or cli_ctx.url:
        endpoint = Endpoint.discover(socket=cli_ctx.socket, url=cli_ctx.url, token=cli_ctx.token)
        return endpoint, endpoint.socket or endpoint.base_url or "", None
    from rft_tui.daemon_control import start_background

    start_background(cli_ctx.paths)
    endpoint = Endpoint.discover(home=cli_ctx.paths.home)
    return endpoint, str(cli_ctx.paths.home), None


def launch_tui(cli_ctx: "CliContext", ssh: str | None = None, open_job: str | None = None) -> None:
    """Run the TUI until the user quits; errors reaching the daemon are one line on stderr (exit 3)."""
    try:
        endpoint, label, forward = resolve_endpoint(cli_ctx, ssh)
    except DaemonNotRunning as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(3)
    from rft_tui.app import RftApp

    try:
        RftApp(AsyncClient(endpoint), open_job=open_job, endpoint_label=label).run()
    finally:
        if forward is not None:
            forward.stop()  # type: ignore[attr-defined]
