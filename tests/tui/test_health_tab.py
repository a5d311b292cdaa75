"""Training health in the TUI: the Job screen's Health tab at 80x24, the Jobs table's alarm badge, and the
notification when an alarm fires live (a real daemon; the fake worker grades with the job's real grader)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.jobs import job_request, make_files
from tests.tui import recorded
from tests.tui.conftest import make_app, row_texts, static_text, until

ALWAYS_ONE = {"type": "string_check", "name": "always_one", "input": "{{sample.output_text}}",
              "reference": "{{sample.output_text}}", "operation": "eq"}


async def _open_health(pilot: Any, job_id: str) -> Any:
    from rft_tui.screens.job import JobScreen

    pilot.app.action_open_job(job_id)
    await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen) and pilot.app.screen.view.job is not None)
    screen = pilot.app.screen
    await pilot.press("6")
    return screen


@pytest.mark.slow
async def test_health_tab_at_80x24_shows_signals_bounds_chart_and_alarms(shared_recorded_daemon: Any) -> None:
    from rft_tui.widgets.reward_chart import RewardChart

    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_health(pilot, recorded.SUCCEEDED)
        assert screen.active_tab == "health"
        signals = screen.query_one("#health-signals")
        alarms = screen.query_one("#health-alarms")
        await until(pilot, lambda: signals.row_count >= 10 and alarms.row_count == 2, what="signals and alarms")
        rows = {r[0]: r for r in row_texts(signals)}
        assert rows["zero_std"][3] == "50.0%" and rows["clipped"][3] == "30.0%"  # the default bounds
        assert rows["gap"][3] == "+0.050" and rows["arith err"][3] == "5.0%"
        assert rows["entropy"][3] != "-"  # 10 % of the first 20 steps' mean
        assert rows["arith p95"][3] == "-"  # a declarative grader has no time limit
        assert rows["clipped"][2] == "60.0%"  # the latest value
        assert len(rows["zero_std"][1]) == 24  # a sparkline of the last 24 steps
        assert [(r[0], r[1], r[6]) for r in row_texts(alarms)] == [("12", "zero_signal", "cleared @18"),
                                                                     ("20", "length_clipped", "open")]
        assert "2 raised, 1 open" in static_text(screen.query_one("#health-alarms-title"))
        chart = screen.query_one("#health-chart", RewardChart)
        await until(pilot, lambda: [s.name for s in chart.series] == ["zero_std", "bound"],
                    what="the first signal's chart with its threshold line")
        assert chart.series[1].points == ((1.0, 0.5), (40.0, 0.5))
        signals.focus()
        await pilot.press("down")  # the gap: its warning and critical lines
        await until(pilot, lambda: [s.name for s in chart.series] == ["gap", "bound", "critical"],
                    what="the gap chart")


async def test_jobs_table_badges_a_job_with_open_alarms(shared_recorded_daemon: Any) -> None:
    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.table
        await until(pilot, lambda: table.row_count == len(recorded.JOBS), what="the recorded jobs")
        status = {r[0]: r[1] for r in row_texts(table)}
        short = {j.id: str(table.get_row(j.id)[0]) for j in recorded.JOBS}
        assert status[short[recorded.SUCCEEDED]] == "succeeded ⚠1"  # length_clipped is still open
        assert status[short[recorded.FAILED]] == "failed"


@pytest.mark.slow
async def test_an_alarm_firing_notifies_and_the_job_row_shows_it(daemon_factory: Any, tmp_path: Path) -> None:
    d = daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_FAKE_GRADE": "1",
                            "RFT_FAKE_STEP_S": "0.05", "RFT_CANCEL_GRACE_S": "3"})
    app = make_app(d, clock=__import__("time").time)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.stream_connected, what="the live stream")
        with d.client() as c:
            train, valid = make_files(c, tmp_path)
            body = job_request(train, valid, batch_size=4, num_generations=4, max_steps=30, eval_interval=30)
            body["method"]["reinforcement"]["grader"] = ALWAYS_ONE
            body["guardrails"] = {"on_alarm": "pause"}
            job = c.create_job(body)
        await until(pilot, lambda: any("Alarm zero_signal" in (n.title or "") for n in app._notifications),
                    timeout=60, what="the alarm's notification")
        note = next(n for n in app._notifications if "Alarm zero_signal" in (n.title or ""))
        assert note.severity == "error" and job.id in note.title and "pausing" in note.title
        table = app.screen.table
        await until(pilot, lambda: str(table.get_row(job.id)[1]) == "paused ⚠1", timeout=60,
                    what="the paused job's badge")
