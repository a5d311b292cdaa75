"""SVG snapshots of every TUI-core screen on recorded data with the clock pinned (100x30, and 80x24 for SSH).

Update after an intended change: `pytest tests/tui/test_snapshots.py --snapshot-update`, then look at
the SVGs in tests/tui/__snapshots__/ before committing them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.tui import recorded
from tests.tui.conftest import make_app, screen_settled, until

SIZE = (100, 30)


def _jobs_ready(app: Any):
    async def run_before(pilot: Any) -> None:
        await until(pilot, lambda: app.screen.table.row_count == len(recorded.JOBS), what="the recorded jobs")
        app.screen.table.move_cursor(row=app.screen.table.get_row_index(recorded.SUCCEEDED))
        await until(pilot, lambda: app.screen.table.selected_job_id == recorded.SUCCEEDED, what="the cursor")
        await screen_settled(pilot)  # the table measures its rows only when idle: not squeezed columns

    return run_before


def _job_tab(app: Any, tab: str, ready: Any):
    async def run_before(pilot: Any) -> None:
        app.action_open_job(recorded.SUCCEEDED)
        await until(pilot, lambda: getattr(app.screen, "job_id", None) == recorded.SUCCEEDED)
        screen = app.screen
        await until(pilot, lambda: screen.view.job is not None and len(screen.view.metrics) == 40
                    and len(screen.view.valid_curve) == 5 and screen.view.selected is not None
                    and len(screen.view.samples) > 0 and len(screen.view.events) > 0
                    and screen.view.log is not None and len(screen.view.checkpoints) == 4, what="the job's data")
        screen.action_show_tab(tab)
        await until(pilot, lambda: ready(screen), what=f"the {tab} tab")
        await screen_settled(pilot)

    return run_before


@pytest.mark.slow
def test_jobs_screen(snap_compare: Any, shared_recorded_daemon: Any) -> None:
    app = make_app(shared_recorded_daemon)
    assert snap_compare(app, terminal_size=SIZE, run_before=_jobs_ready(app))


def test_jobs_screen_80x24(snap_compare: Any, shared_recorded_daemon: Any) -> None:
    app = make_app(shared_recorded_daemon)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_jobs_ready(app))


@pytest.mark.slow
def test_help_screen(snap_compare: Any, shared_recorded_daemon: Any) -> None:
    app = make_app(shared_recorded_daemon)
    assert snap_compare(app, terminal_size=SIZE, run_before=_jobs_ready(app), press=["question_mark"])


TABS_READY = {
    "overview": lambda s: s.query_one("#checkpoints").row_count == 4,
    "rewards": lambda s: s.query_one("#metrics").row_count == 40,
    "validation": lambda s: s.query_one("#valid-table").row_count == 12,
    "samples": lambda s: s.query_one("#samples-table").row_count == 100,
    "events": lambda s: len(s.query_one("#events-log").lines) > 10,
    "health": lambda s: s.query_one("#health-signals").row_count >= 10 and s.query_one("#health-alarms").row_count == 2
    and len(s.query_one("#health-chart").series) == 2,
}


@pytest.mark.parametrize("tab,ready", list(TABS_READY.items()), ids=list(TABS_READY))
@pytest.mark.slow
def test_job_screen_tab(snap_compare: Any, shared_recorded_daemon: Any, tab: str, ready: Any) -> None:
    app = make_app(shared_recorded_daemon)
    assert snap_compare(app, terminal_size=SIZE, run_before=_job_tab(app, tab, ready))


@pytest.mark.slow
def test_help_screen_80x24(snap_compare: Any, shared_recorded_daemon: Any) -> None:
    """Help at 80x24 opens at its top: title and the screen's own first keys."""
    from rft_tui.screens.help import HelpScreen

    app = make_app(shared_recorded_daemon)
    jobs_ready = _jobs_ready(app)

    async def run_before(pilot: Any) -> None:
        await jobs_ready(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen) and app.screen.at_top, what="help at its top")
        await screen_settled(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("tab,ready", list(TABS_READY.items()), ids=list(TABS_READY))
@pytest.mark.slow
def test_job_screen_tab_80x24(snap_compare: Any, shared_recorded_daemon: Any, tab: str, ready: Any) -> None:
    app = make_app(shared_recorded_daemon)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_job_tab(app, tab, ready))
