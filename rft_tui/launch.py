"""`rft-tui` with no command: find (or start, or SSH-forward) the daemon, then run the Textual app."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from daemon.client import AsyncClient, DaemonNotRunning

if TYPE_CHECKING:
    from rft_tui.context import CliContext


def launch_tui(cli_ctx: CliContext, open_job: str | None = None) -> None:
    """Run the TUI until the user quits; errors reaching the daemon are one line on stderr (exit 3)."""
    try:
        endpoint = cli_ctx.endpoint()
    except DaemonNotRunning as e:
        cli_ctx.close()
        click.echo(f"Error: {e}", err=True)
        sys.exit(3)
    from rft_tui.app import RftApp

    try:
        RftApp(AsyncClient(endpoint), open_job=open_job, endpoint_label=cli_ctx.label).run()
    finally:
        cli_ctx.close()
