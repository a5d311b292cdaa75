"""`rft-tui daemon start|stop|status|restart|logs`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import click

from daemon.client import Client, DaemonNotRunning, read_status
from daemon.procs import log_tail
from rft_tui import daemon_control
from rft_tui.context import CliContext, pass_ctx
from rft_tui.output import fmt_duration, handle_errors, json_option, print_json, print_kv


@click.group("daemon")
def group() -> None:
    """Run and inspect the local daemon (one per user and RFT_HOME)."""


def run_on_ssh_host(obj: CliContext, args: list[str]) -> None:
    """With --ssh, `daemon ...` runs on that host against its own daemon (output passed through), then exits."""
    if obj.ssh is None:
        return
    cmd = obj.ssh.remote_argv(["daemon", *args])
    try:
        rc = subprocess.call(cmd, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise DaemonNotRunning(f"cannot run {cmd[0]}: {e}") from e
    if rc == 127:
        raise DaemonNotRunning(obj.ssh.not_found_message())
    sys.exit(rc)


def refuse_remote(obj: CliContext, command: str) -> None:
    """`daemon start|restart|logs` act on this machine's daemon: with --url (a daemon elsewhere) they would
    silently start or read a different one, so they say so instead."""
    if obj.url:
        raise click.UsageError(
            f"`daemon {command}` works on this machine's daemon, but --url names the daemon at {obj.url}. "
            f"Run it on that machine, or use --ssh HOST (which runs `rft-tui daemon {command}` there).")


def _flags(**flags: object) -> list[str]:
    """`--name value` / `--flag` for the arguments that were given (to repeat a command on the --ssh host)."""
    out: list[str] = []
    for name, value in flags.items():
        opt = "--" + name.replace("_", "-")
        if value is True:
            out.append(opt)
        elif value not in (None, False):
            out += [opt, str(value)]
    return out


@group.command()
@click.option("--foreground", is_flag=True, help="Run in this terminal (logs to stderr) instead of the background.")
@click.option("--tcp", default=None, metavar="HOST:PORT", help="Also listen on TCP, bearer token in run/token.")
@click.option("--log-level", default="warning", type=click.Choice(["debug", "info", "warning", "error"]))
@json_option
@pass_ctx
@handle_errors
def start(obj: CliContext, foreground: bool, tcp: str | None, log_level: str, as_json: bool) -> None:
    """Start the daemon (in the background unless --foreground)."""
    run_on_ssh_host(obj, ["start", *_flags(foreground=foreground, tcp=tcp, log_level=log_level, json=as_json)])
    refuse_remote(obj, "start")
    paths = obj.paths.ensure()
    if daemon_control.is_running(paths):
        status = read_status(paths)
        if as_json:
            print_json({"started": False, "pid": status.pid, "socket": status.socket})
        else:
            click.echo(f"Daemon already running (pid {status.pid}, socket {status.socket})")
        return
    if foreground:
        from daemon.server import serve  # the daemon itself; the CLI imports it only to become it

        serve(str(paths.home), tcp, log_level)
        return
    pid = daemon_control.start_background(paths, tcp=tcp, log_level=log_level)
    status = read_status(paths)
    if as_json:
        print_json({"started": True, "pid": pid, "socket": status.socket, "tcp": status.tcp})
    else:
        click.echo(f"Daemon started (pid {pid}, socket {status.socket})")
        if tcp:
            click.echo(f"TCP on {tcp}; bearer token in {paths.token_file}")


@group.command()
@json_option
@pass_ctx
@handle_errors
def stop(obj: CliContext, as_json: bool) -> None:
    """Stop the daemon: ask over the API, wait, then SIGTERM, then SIGKILL. Workers keep running."""
    run_on_ssh_host(obj, ["stop", *_flags(json=as_json)])
    if obj.url:  # a daemon elsewhere: ask it over the API (its owner's token); it stops as on SIGTERM
        with obj.client(autostart=False, timeout=10) as c:
            pid = c.health().pid
            c.shutdown()
        if as_json:
            print_json({"stopped": True, "pid": pid, "url": obj.url})
        else:
            click.echo(f"Daemon at {obj.url} (pid {pid}) asked to stop; running workers keep running")
        return
    stopped = daemon_control.stop(obj.paths)
    if as_json:
        print_json({"stopped": stopped})
    else:
        click.echo("Daemon stopped" if stopped else "No daemon was running")


@group.command()
@json_option
@pass_ctx
@handle_errors
def status(obj: CliContext, as_json: bool) -> None:
    """Show whether the daemon runs, its pid, socket, version and uptime."""
    run_on_ssh_host(obj, ["status", *_flags(json=as_json)])
    try:
        if obj.url or obj.socket:  # the daemon those name, wherever it runs
            where, tcp = obj.socket or "-", obj.url
            with obj.client(autostart=False, timeout=5) as c:
                h = c.health()
        else:
            st = read_status(obj.paths)
            where, tcp = st.socket, st.tcp
            with Client.connect(socket=st.socket, timeout=5) as c:
                h = c.health()
    except DaemonNotRunning as e:
        if as_json:
            print_json({"running": False, "reason": str(e)})
        else:
            click.echo(f"Not running: {e}")
        sys.exit(3)
    if as_json:
        print_json({"running": True, **h.model_dump(mode="json")})
        return
    print_kv([("status", "running"), ("pid", h.pid), ("version", h.version), ("socket", where),
              ("tcp", tcp or "-"), ("home", h.home), ("uptime", fmt_duration(h.uptime_s)),
              ("running jobs", h.running_jobs), ("queued jobs", h.queued_jobs),
              ("grader sandbox", h.sandbox or "-")])


@group.command()
@click.option("--tcp", default=None, metavar="HOST:PORT")
@json_option
@pass_ctx
@handle_errors
def restart(obj: CliContext, tcp: str | None, as_json: bool) -> None:
    """Stop and start the daemon; running workers are re-adopted."""
    run_on_ssh_host(obj, ["restart", *_flags(tcp=tcp, json=as_json)])
    refuse_remote(obj, "restart")
    daemon_control.stop(obj.paths)
    pid = daemon_control.start_background(obj.paths, tcp=tcp)
    if as_json:
        print_json({"pid": pid})
    else:
        click.echo(f"Daemon restarted (pid {pid})")


@group.command()
@click.option("-n", "--lines", default=50, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@pass_ctx
@handle_errors
def logs(obj: CliContext, lines: int, follow: bool) -> None:
    """Print the daemon's log."""
    run_on_ssh_host(obj, ["logs", *_flags(lines=lines, follow=follow)])
    refuse_remote(obj, "logs")
    path = obj.paths.daemon_log
    for line in log_tail(path, lines):
        click.echo(line)
    if not follow:
        return
    try:
        with open(path, errors="replace") as f:
            f.seek(0, os.SEEK_END)
            while True:
                line = f.readline()
                if line:
                    click.echo(line.rstrip("\n"))
                else:
                    time.sleep(0.5)
    except (KeyboardInterrupt, FileNotFoundError):
        return
