"""`rft-tui`: the command line. With no command it opens the TUI. Imports no torch, ever."""

from __future__ import annotations

import os
from typing import Any

import click

from daemon.paths import Paths
from rft_tui.context import CliContext, pass_ctx

__all__ = ["CliContext", "pass_ctx", "main", "run"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS, invoke_without_command=True)
@click.option("--home", envvar="RFT_HOME", type=click.Path(file_okay=False), default=None,
              help="State directory (default: $RFT_HOME or ~/.local/share/rft-tui).")
@click.option("--socket", "socket_", type=click.Path(dir_okay=False), default=None,
              help="Attach to the daemon listening on this Unix socket.")
@click.option("--url", default=None, help="Attach to a daemon over TCP (http://HOST:PORT; needs --token).")
@click.option("--token", envvar="RFT_TOKEN", default=None, help="Bearer token for --url.")
@click.option("--ssh", "ssh", default=None, metavar="[USER@]HOST[:PORT]",
              help="Use the daemon on HOST over SSH (socket forwarding; started there if needed), for the TUI "
                   "and every command.")
@click.option("-p", "--ssh-port", "ssh_port", envvar="RFT_SSH_PORT", type=int, default=None, metavar="PORT",
              help="SSH port for --ssh [$RFT_SSH_PORT].")
@click.option("--ssh-options", "ssh_options", envvar="RFT_SSH_OPTIONS", default=None, metavar="'OPTS'",
              help="Extra ssh arguments for --ssh, e.g. '-F ~/.ssh/config.rft -i KEY' [$RFT_SSH_OPTIONS].")
@click.option("--remote-command", "remote_command", envvar="RFT_SSH_REMOTE_COMMAND", default=None, metavar="CMD",
              help="The rft-tui command on the --ssh host (default: rft-tui on its non-interactive PATH) "
                   "[$RFT_SSH_REMOTE_COMMAND].")
@click.option("--remote-home", "remote_home", envvar="RFT_SSH_REMOTE_HOME", default=None, metavar="DIR",
              help="RFT_HOME on the --ssh host (default: its own default) [$RFT_SSH_REMOTE_HOME].")
@click.version_option(package_name="rft-tui")
@click.pass_context
def main(ctx: click.Context, home: str | None, socket_: str | None, url: str | None, token: str | None,
         ssh: str | None, ssh_port: int | None, ssh_options: str | None, remote_command: str | None,
         remote_home: str | None) -> None:
    """rft-tui: reinforcement fine-tuning (GRPO + LoRA) on your own GPU, with a TUI.

    Run without a command to open the TUI. With --ssh or --url every command talks to that daemon.
    """
    if home:
        os.environ["RFT_HOME"] = str(Paths.resolve(home).home)
    settings = None
    if ssh:
        from rft_tui.ssh_forward import SshForwardError, SshSettings

        if socket_ or url:
            raise click.UsageError("--ssh cannot be combined with --socket or --url")
        try:
            settings = SshSettings.parse(ssh, port=ssh_port, options=ssh_options, remote_command=remote_command,
                                         remote_home=remote_home)
        except SshForwardError as e:
            raise click.BadParameter(str(e), param_hint="--ssh") from None
    ctx.obj = CliContext(home=home, socket=socket_, url=url, token=token, ssh=settings)
    if ctx.invoked_subcommand is None:
        from rft_tui.launch import launch_tui

        launch_tui(ctx.obj)


def _register() -> None:
    from rft_tui.commands import clusters, daemon_cmd, demo, doctor, files, graders, jobs

    for module in (daemon_cmd, files, jobs, graders, clusters):
        main.add_command(module.group)
    main.add_command(demo.command)
    main.add_command(doctor.doctor)
    main.add_command(doctor.models)


_register()


def run() -> Any:
    return main(prog_name="rft-tui")
