"""The app shell: start-up without torch, help, command palette, themes, back/quit, stream reconnect, SSH."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.client import Client
from tests.support.daemon_proc import REPO
from tests.support.jobs import job_request, make_files
from tests.tui import recorded
from tests.tui.conftest import footer_actions, make_app, until

HEAVY = ("torch", "transformers", "trl", "peft")

STARTUP_SCRIPT = """
import asyncio, json, sys, time
t0 = time.perf_counter()
from daemon.client import AsyncClient
from rft_tui.app import RftApp
async def main():
    app = RftApp(AsyncClient.connect(socket=sys.argv[1]))
    async with app.run_test(size=(100, 30)) as pilot:
        while app.screen.query_one("#jobs-table").row_count < int(sys.argv[2]):
            await pilot.pause(0.01)
        first = time.perf_counter() - t0
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy})
        print(json.dumps({{"first_rows_s": first, "heavy": heavy}}))
asyncio.run(main())
"""


@pytest.mark.slow
def test_startup_imports_no_torch_and_shows_jobs_in_about_a_second(shared_recorded_daemon) -> None:
    script = STARTUP_SCRIPT.format(heavy=set(HEAVY))
    out = subprocess.run([sys.executable, "-c", script, shared_recorded_daemon.socket, str(len(recorded.JOBS))],
                         capture_output=True, text=True, timeout=60, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["first_rows_s"] < 6.0, result  # ~1 s on an idle machine (see tests/bench/tui.py); generous for CI


async def test_help_lists_the_active_keys_of_the_screen_with_what_they_do(shared_recorded_daemon) -> None:
    from rft_tui.screens.help import HelpScreen

    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.screen.table.row_count == len(recorded.JOBS))
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        rows = {r[1]: r for r in app.screen.rows}
        assert rows["New job"][0] == "n" and rows["New job"][2] == "Start a new fine-tuning job"
        assert rows["Filter"][0] == "/" and "Quit" in rows and "Help" in rows
        assert "Export ckpt" not in rows  # another screen's key
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        app.action_open_job(recorded.SUCCEEDED)
        await until(pilot, lambda: getattr(app.screen, "job_id", None) == recorded.SUCCEEDED)
        await until(pilot, lambda: "export" in footer_actions(app))
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        rows = {r[1]: r for r in app.screen.rows}
        assert "Export ckpt" in rows and "Duplicate" in rows and "Cancel" not in rows  # a finished job
        await pilot.press("f1")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))


@pytest.mark.parametrize("open_screen", ["jobs", "job", "files", "graders", "new_job"])
@pytest.mark.slow
async def test_help_opens_at_the_top_at_80x24(shared_recorded_daemon, open_screen: str) -> None:
    """Help opens on its title and this screen's own keys (not Textual's tab/copy), on every screen."""
    from rft_tui.screens.help import HelpScreen

    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.screen.table.row_count == len(recorded.JOBS))
        opener = {"job": lambda: app.action_open_job(recorded.SUCCEEDED), "files": app.action_open_files,
                  "graders": app.action_open_graders, "new_job": app.action_new_job}.get(open_screen)
        if opener is not None:
            opener()
            await until(pilot, lambda: len(app.screen_stack) == 2, what=f"the {open_screen} screen")
        await pilot.pause()
        app.set_focus(None)  # no focused Input: `?` is a key, not a character to type
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        help_screen = app.screen
        await until(pilot, lambda: help_screen.at_top, what="help at its first row")
        assert help_screen.query_one("#help-title").region.height == 1
        first = help_screen.rows[0]
        assert first[2], first  # a key of ours, with its tooltip, not Textual's "Focus Next"
        assert "Focus Next" not in [r[1] for r in help_screen.rows[:5]]
        await pilot.press("end")  # scrolled away and closed, it opens at the top again
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), what="help to close")
        await pilot.press("f1")  # (focus went back to the form's Input, where `?` is a character)
        await until(pilot, lambda: isinstance(app.screen, HelpScreen) and app.screen.at_top, what="help again")


@pytest.mark.slow
async def test_command_palette_offers_the_screens_commands(shared_recorded_daemon) -> None:
    from textual.command import CommandPalette

    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.screen.table.row_count == len(recorded.JOBS))
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Reload jobs", "Filter jobs", "New job", "Files", "Graders"} <= set(titles)
        assert any(t.startswith("Open ftjob-") for t in titles)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"filter jobs")
        from textual.command import CommandList

        first = lambda: str(app.screen.query_one(CommandList).get_option_at_index(0).prompt)  # noqa: E731
        await until(pilot, lambda: "Filter jobs" in first(), what="the palette to find the command")
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, CommandPalette))
        await until(pilot, lambda: app.screen.query_one("#jobs-filter").has_focus, what="the filter box")
        app.action_open_job(recorded.SUCCEEDED)
        await until(pilot, lambda: getattr(app.screen, "job_id", None) == recorded.SUCCEEDED
                    and app.screen.view.job is not None)
        job_titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Tab: validation", "Validation: show regressed", "Duplicate job"} <= set(job_titles)
        assert "Cancel job" not in job_titles


@pytest.mark.slow
async def test_theme_switch_escape_back_and_q_quits(shared_recorded_daemon) -> None:
    from textual.command import CommandPalette

    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.screen.table.row_count == len(recorded.JOBS))
        await pilot.press("ctrl+t")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), what="the theme picker")
        await pilot.press(*"textual-light", "enter")
        await until(pilot, lambda: app.theme == "textual-light")
        await pilot.press("enter")  # open the highlighted job
        await until(pilot, lambda: hasattr(app.screen, "job_id"))
        await pilot.press("escape")
        await until(pilot, lambda: not hasattr(app.screen, "job_id"))
        await pilot.press("q")
        await until(pilot, lambda: app._exit, what="the app to exit")


@pytest.mark.slow
async def test_stream_reconnects_after_the_daemon_restarts(fake_worker_daemon, tmp_path: Path) -> None:
    app = make_app(fake_worker_daemon, clock=__import__("time").time)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.stream_connected, what="the stream")
        fake_worker_daemon.stop()
        await until(pilot, lambda: not app.stream_connected, what="the drop to be noticed")
        fake_worker_daemon.start()
        await until(pilot, lambda: app.stream_connected, 20, what="the stream to reconnect")
        with fake_worker_daemon.client() as c:
            train, valid = make_files(c, tmp_path)
            job = c.create_job(job_request(train, valid, max_steps=5))
        await until(pilot, lambda: job.id in app.screen.jobs, 20, what="the new job to arrive over the new stream")


# ---------------------------------------------------------------------------------------- SSH


@pytest.fixture
def fake_ssh(tmp_path: Path) -> tuple[str, Path]:
    """`ssh` on PATH is tests/tui/fake_ssh.py; it logs each invocation."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    ssh = bindir / "ssh"
    ssh.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).with_name('fake_ssh.py')} \"$@\"\n")
    ssh.chmod(ssh.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "ssh.log"
    os.environ["FAKE_SSH_LOG"] = str(log)
    os.environ["PATH"] = f"{bindir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return str(ssh), log


def test_ssh_commands_are_plain_openssh() -> None:
    from rft_tui.ssh_forward import SshForward

    fwd = SshForward("ada@gpu-box")
    try:
        assert fwd.query_command("status") == ["ssh", "-o", "BatchMode=yes", "ada@gpu-box", "rft-tui", "daemon",
                                               "status", "--json"]
        cmd = fwd.forward_command("/home/ada/.local/share/rft-tui/run/daemon.sock")
        assert cmd[:2] == ["ssh", "-N"] and cmd[-1] == "ada@gpu-box"
        assert cmd[cmd.index("-L") + 1] == f"{fwd.local_socket}:/home/ada/.local/share/rft-tui/run/daemon.sock"
        assert "ExitOnForwardFailure=yes" in cmd
    finally:
        fwd.stop()
    with pytest.raises(Exception, match="expects \\[user@\\]host"):
        SshForward("-oProxyCommand=evil")


def test_ssh_forwards_the_remote_daemon_socket(fake_ssh, shared_recorded_daemon, monkeypatch) -> None:
    from rft_tui.ssh_forward import SshForward

    monkeypatch.setenv("RFT_HOME", str(shared_recorded_daemon.home))  # the "remote" side's home
    fwd = SshForward("ada@gpu-box")
    try:
        local = fwd.start()
        assert local != shared_recorded_daemon.socket
        with Client.connect(socket=local, timeout=10) as c:
            assert c.health().pid == shared_recorded_daemon.pid
            assert len(c.list_jobs(limit=50).data) == len(recorded.JOBS)
    finally:
        fwd.stop()
    calls = [json.loads(line) for line in fake_ssh[1].read_text().splitlines()]
    assert calls[0][-3:] == ["daemon", "status", "--json"] and calls[-1][0] == "-N"
    assert not os.path.exists(local)


@pytest.mark.slow
async def test_ssh_starts_the_remote_daemon_when_none_runs_and_the_tui_works_over_it(
        fake_ssh, rft_home: Path) -> None:
    from textual.widgets import Static

    from daemon.client import AsyncClient
    from rft_tui.app import RftApp
    from rft_tui.daemon_control import stop
    from rft_tui.ssh_forward import SshForward

    fwd = SshForward("gpu-box")
    try:
        local = fwd.start(timeout=40)
        calls = [json.loads(line) for line in fake_ssh[1].read_text().splitlines()]
        assert [c[-2] for c in calls[:2]] == ["status", "start"]
        app = RftApp(AsyncClient.connect(socket=local))
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: "No jobs yet" in str(app.screen.query_one("#jobs-empty", Static).content))
            await until(pilot, lambda: app.stream_connected, what="the stream over the forward")
    finally:
        fwd.stop()
        from daemon.paths import Paths

        stop(Paths.resolve(rft_home))


def test_ssh_to_an_unreachable_host_is_one_clear_line(fake_ssh) -> None:
    out = subprocess.run([str(Path(sys.executable).parent / "rft-tui"), "--ssh", "unreachable"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3
    assert "Could not resolve hostname unreachable" in out.stderr and "Traceback" not in out.stderr
