"""The trajectory view (agent RFT) against a real daemon on a recorded tools job, at 80x24: Samples and
Validation rows open their episodes turn by turn, tool calls highlighted with arguments, results, latencies and
errors; the overview, validation summary and reward chart show the tool-call rate."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon_proc import DaemonProcess, kill_job_workers
from tests.tui import recorded_tools
from tests.tui.conftest import make_app, row_texts, screen_settled, static_text, until

SIZE = (80, 24)


@pytest.fixture(scope="module")
def tools_daemon() -> Iterator[DaemonProcess]:
    home = Path(tempfile.mkdtemp(prefix="rft-"))
    recorded_tools.record(home)
    d = DaemonProcess(home, env={"RFT_DEVICE": "cpu"}).start()
    try:
        yield d
    finally:
        d.stop()
        kill_job_workers(d.paths)
        shutil.rmtree(home, ignore_errors=True)


async def _open(pilot: Any) -> Any:
    from rft_tui.screens.job import JobScreen

    pilot.app.action_open_job(recorded_tools.JOB.id)
    await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen) and pilot.app.screen.view.job is not None)
    screen = pilot.app.screen
    await until(pilot, lambda: len(screen.view.metrics) == 10 and screen.view.selected is not None
                and screen.view.base is not None and len(screen.view.samples) == 10, what="the job's data")
    return screen


def _blocks(app: Any) -> list[str]:
    """The trajectory view's blocks as plain text (header, then one per turn), in order."""
    from textual.widgets import Static

    return [static_text(s, 76) for s in app.screen.query(Static)]


@pytest.mark.slow
async def test_a_sample_opens_its_episode_turn_by_turn(tools_daemon: DaemonProcess) -> None:
    from rft_tui.screens.job import JobScreen
    from rft_tui.screens.trajectory import TrajectoryScreen
    from rft_tui.widgets.samples_table import SamplesTable

    app = make_app(tools_daemon)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot)
        await pilot.press("4")
        table = screen.query_one(SamplesTable)
        await until(pilot, lambda: table.row_count == 10, what="10 samples")
        completions = [r[4] for r in row_texts(table)]
        assert completions[0].startswith("⚙ ") and not completions[2].startswith("⚙")  # step 3 guessed
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TrajectoryScreen), what="the trajectory view")
        blocks = _blocks(app)
        assert blocks[0].startswith("Sample ") and "reward 1.000" in blocks[0]
        assert "2 model turns, 1 tool call, ended on its final answer" in blocks[0] and "prompt 888+379=" in blocks[0]
        assert blocks[1].startswith("assistant · turn 1") and "⚙ add" in blocks[1]
        assert '{"a": 888, "b": 379}' in blocks[1] and "→ 1267  · 4.2 ms" in blocks[1] and "call_1" in blocks[1]
        assert blocks[2].startswith("tool add · call_1") and "1267" in blocks[2]
        assert blocks[3].startswith("assistant · turn 2") and "1267" in blocks[3]
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, JobScreen), what="back on the job")


@pytest.mark.slow
async def test_a_validation_row_shows_base_and_step_episodes_with_errors(tools_daemon: DaemonProcess) -> None:
    from rft_tui.screens.trajectory import TrajectoryScreen
    from rft_tui.widgets.validation_table import ValidationTable

    app = make_app(tools_daemon)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot)
        assert "Tool calls" in static_text(screen.query_one("#overview-text"))
        overview = static_text(screen.query_one("#overview-text"), 120)
        assert "train 100% of episodes (step 10) · valid 50% → 100% (step 10)" in overview
        await pilot.press("3")
        table = screen.query_one(ValidationTable)
        await until(pilot, lambda: table.row_count == 6, what="6 validation rows")
        assert "tool calls 50% → 100%" in static_text(screen.query_one("#valid-summary"), 200)
        assert row_texts(table)[4][3].startswith("⚙✗ ") and row_texts(table)[4][5].startswith("⚙ ")
        table.focus()
        table.move_cursor(row=4)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TrajectoryScreen), what="the trajectory view")
        blocks = _blocks(app)
        headers = [b for b in blocks if b.startswith(("Base model", "Step 10"))]
        assert [h.split()[0] for h in headers] == ["Base", "Step"]
        assert "1 tool call (1 failed)" in headers[0] and "reward 0.125" in headers[0]
        failed = next(b for b in blocks if "✗ add" in b)
        assert '{"a": 950, "b": "b"}' in failed and "error: bad arguments for add: b must be integer" in failed
        assert "never ran" in failed
        assert any(b.startswith("tool add · call_1") and '{"error": "bad arguments' in b for b in blocks)
        assert "reward 1.000" in headers[1]
        assert app.screen.query_one("#trajectory").max_scroll_y > 0  # longer than 24 lines: it scrolls
        await pilot.press("escape")


@pytest.mark.slow
async def test_parallel_calls_and_the_tool_call_line_on_the_chart(tools_daemon: DaemonProcess) -> None:
    from rft_tui.screens.trajectory import TrajectoryScreen
    from rft_tui.widgets.reward_chart import RewardChart
    from rft_tui.widgets.validation_table import ValidationTable

    app = make_app(tools_daemon)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot)
        chart = screen.query_one(RewardChart)
        await until(pilot, lambda: "tool calls" in [s.name for s in chart.series], what="the tool-call line")
        line = next(s for s in chart.series if s.name == "tool calls")
        assert [p[0] for p in line.points] == list(range(1, 11)) and line.points[-1][1] > line.points[0][1]
        await pilot.press("3")
        table = screen.query_one(ValidationTable)
        await until(pilot, lambda: table.row_count == 6, what="6 validation rows")
        table.focus()
        table.move_cursor(row=3)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TrajectoryScreen), what="the trajectory view")
        calls = [b for b in _blocks(app) if b.count("⚙ add") == 2]
        assert calls and "  call_1" in calls[0] and "  call_2" in calls[0]
        assert "→ 1468  · 3.1 ms" in calls[0] and "→ 1468  · 13 ms" in calls[0]


@pytest.mark.slow
def test_trajectory_view_snapshot_80x24(snap_compare: Any, tools_daemon: DaemonProcess) -> None:
    from rft_tui.screens.trajectory import TrajectoryScreen
    from rft_tui.widgets.validation_table import ValidationTable

    app = make_app(tools_daemon)

    async def run_before(pilot: Any) -> None:
        screen = await _open(pilot)
        screen.action_show_tab("validation")
        table = screen.query_one(ValidationTable)
        await until(pilot, lambda: table.row_count == 6, what="6 validation rows")
        table.focus()
        table.move_cursor(row=4)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TrajectoryScreen), what="the trajectory view")
        await screen_settled(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.slow
def test_overview_tool_line_before_and_after_the_first_checkpoint() -> None:
    from daemon import api
    from rft_tui.screens.job_view import JobView, tool_use_text

    base = api.ValidationPage(job_id="j", step=0, steps=[0], data=[], summary={"tool_call_rate": 0.41})
    later = api.ValidationPage(job_id="j", step=5, steps=[0, 5], data=[], summary={"tool_call_rate": 0.96})
    step = api.MetricStep(step=3, created_at=0.0, values={"tools/call_rate": 0.55})
    assert tool_use_text(JobView()) is None
    before = tool_use_text(JobView(metrics=(step,), base=base, selected=base))
    assert before is not None and before.plain == "train 55% of episodes (step 3) · valid 41% (base model)"
    after = tool_use_text(JobView(base=base, selected=later))
    assert after is not None and after.plain == "valid 41% → 96% (step 5)"
