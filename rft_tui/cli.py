"""`rft-tui`: the command line. With no command it opens the TUI. Imports no torch, ever."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import click

from daemon.client import Client, Paths

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass
class CliContext:
    """Global options, and the one way commands get a client (starting the daemon when needed)."""

    home: str | None
    socket: str | None
    url: str | None
    token: str | None

    @property
    def paths(self) -> Paths:
        return Paths.resolve(self.home)

    def client(self, autostart: bool = True, timeout: float = 60.0) -> Client:
        if self.socket or self.url:
            return Client.connect(socket=self.socket, url=self.url, token=self.token, timeout=timeout)
        if autostart:
            from rft_tui.daemon_control import start_background

            start_background(self.paths)
        return Client.connect(home=self.paths.home, timeout=timeout)


pass_ctx = click.make_pass_decorator(CliContext)


@click.group(context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
@click.option("--home", envvar="RFT_HOME", type=click.Path(file_okay=False), default=None,
              help="State directory (default: $RFT_HOME or ~/.local/share/rft-tui).")
@click.option("--socket", "socket_", type=click.Path(dir_okay=False), default=None,
              help="Attach to the daemon listening on this Unix socket.")
@click.option("--url", default=None, help="Attach to a daemon over TCP (http://HOST:PORT; needs --token).")
@click.option("--token", envvar="RFT_TOKEN", default=None, help="Bearer token for --url.")
@click.option("--ssh", "ssh", default=None, metavar="[USER@]HOST",
              help="Forward a remote daemon's socket over SSH and attach the TUI to it.")
@click.version_option(package_name="rft-tui")
@click.pass_context
def main(ctx: click.Context, home: str | None, socket_: str | None, url: str | None, token: str | None,
         ssh: str | None) -> None:
    """rft-tui: reinforcement fine-tuning (GRPO + LoRA) on your own GPU, with a TUI.

    Run without a command to open the TUI.
    """
    if home:
        os.environ["RFT_HOME"] = str(Paths.resolve(home).home)
    ctx.obj = CliContext(home=home, socket=socket_, url=url, token=token)
    if ctx.invoked_subcommand is None:
        from rft_tui.launch import launch_tui

        launch_tui(ctx.obj, ssh=ssh)


def _register() -> None:
    from rft_tui.commands import daemon_cmd, files, graders, jobs

    for module in (daemon_cmd, files, jobs, graders):
        main.add_command(module.group)
    from rft_tui.commands import demo; main.add_command(demo.command)  # noqa: E702


_register()


def run() -> Any:
    return main(prog_name="rft-tui")
