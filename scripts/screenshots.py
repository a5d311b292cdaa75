"""Write the README's screenshots (SVG) from the real app on realistic recorded data.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

Starts a daemon on a temporary RFT_HOME filled by tests/tui/recorded.py (jobs in every state, metrics,
validation base-vs-checkpoint, samples, events), drives the app headless and saves the Jobs screen,
the Job screen's Rewards tab and its Validation tab; then a second daemon on tests/tui/recorded_tools.py (an
agent-RFT job) for the trajectory view of a validation row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.daemon_proc import DaemonProcess, kill_job_workers  # noqa: E402
from tests.tui import recorded, recorded_tools  # noqa: E402

SIZE = (110, 34)


async def _until(pilot, predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the screen did not fill in time")
        await pilot.pause(0.05)


async def shoot(daemon: DaemonProcess, out: Path) -> list[Path]:
    from rft_tui.app import RftApp

    app = RftApp(daemon.async_client(), clock=lambda: float(recorded.CLOCK), endpoint_label="~/.local/share/rft-tui")
    written: list[Path] = []
    async with app.run_test(size=SIZE) as pilot:
        await _until(pilot, lambda: app.screen.table.row_count == len(recorded.JOBS))
        app.screen.table.move_cursor(row=app.screen.table.get_row_index(recorded.RUNNING))
        await pilot.pause(0.2)
        written.append(Path(app.save_screenshot("jobs.svg", str(out))))
        app.action_open_job(recorded.SUCCEEDED)
        await _until(pilot, lambda: getattr(app.screen, "job_id", None) == recorded.SUCCEEDED
                     and len(app.screen.view.metrics) == 40 and len(app.screen.view.valid_curve) == 5
                     and app.screen.view.selected is not None)
        screen = app.screen
        screen.action_show_tab("rewards")
        await pilot.pause(0.3)
        written.append(Path(app.save_screenshot("job-rewards.svg", str(out))))
        screen.action_show_tab("validation")
        await _until(pilot, lambda: screen.query_one("#valid-table").row_count == 12
                     and screen.view.compare is not None)
        await pilot.pause(0.3)
        written.append(Path(app.save_screenshot("job-validation.svg", str(out))))
    await app.client.aclose()
    return written


async def shoot_trajectory(daemon: DaemonProcess, out: Path) -> list[Path]:
    """The trajectory view of validation row 4: the base model's failed tool call, then the trained model's."""
    from rft_tui.app import RftApp
    from rft_tui.screens.trajectory import TrajectoryScreen

    app = RftApp(daemon.async_client(), clock=lambda: float(recorded.CLOCK), endpoint_label="~/.local/share/rft-tui")
    async with app.run_test(size=(100, 34)) as pilot:
        app.action_open_job(recorded_tools.JOB.id)
        await _until(pilot, lambda: getattr(app.screen, "job_id", None) == recorded_tools.JOB.id
                     and app.screen.view.selected is not None and app.screen.view.base is not None)
        screen = app.screen
        screen.action_show_tab("validation")
        table = screen.query_one("#valid-table")
        await _until(pilot, lambda: table.row_count == len(recorded_tools.PROBLEMS))
        table.focus()
        table.move_cursor(row=4)
        await pilot.press("enter")
        await _until(pilot, lambda: isinstance(app.screen, TrajectoryScreen))
        await pilot.pause(0.3)
        path = Path(app.save_screenshot("trajectory.svg", str(out)))
    await app.client.aclose()
    return [path]


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the README's TUI screenshots (SVG).")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="rft-shots-"))
    os.environ["RFT_HOME"] = str(home)
    recorded.record(home)
    daemon = DaemonProcess(home, env=recorded.IDLE_WORKER_ENV).start()
    try:
        for path in asyncio.run(shoot(daemon, args.out)):
            print(path)
    finally:
        daemon.stop()
        kill_job_workers(daemon.paths)
        shutil.rmtree(home, ignore_errors=True)
    home = Path(tempfile.mkdtemp(prefix="rft-shots-"))
    os.environ["RFT_HOME"] = str(home)
    recorded_tools.record(home)
    daemon = DaemonProcess(home).start()
    try:
        for path in asyncio.run(shoot_trajectory(daemon, args.out)):
            print(path)
    finally:
        daemon.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
