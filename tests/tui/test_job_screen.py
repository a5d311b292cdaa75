"""Job screen against a real daemon: every tab on recorded data, its keys, and live growth from a worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import api
from tests.support.jobs import job_request, make_files
from tests.tui import recorded
from tests.tui.conftest import footer_actions, make_app, row_texts, static_text, until


async def _open(pilot, job_id: str):
    from rft_tui.screens.job import JobScreen

    pilot.app.action_open_job(job_id)
    await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen) and pilot.app.screen.view.job is not None)
    return pilot.app.screen


@pytest.mark.slow
async def test_overview_shows_spec_status_timings_checkpoints_and_hyperparameters(shared_recorded_daemon) -> None:
    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await _open(pilot, recorded.SUCCEEDED)
        await until(pilot, lambda: screen.query_one("#checkpoints").row_count == 4, what="4 checkpoints")
        shown = static_text(screen.query_one("#overview-text"), 100) + static_text(screen.query_one("#hp-text"), 100)
        for expected in ("succeeded", "40/40", "0.392 → 0.617", "2m00s", "arith-train.jsonl / arith-valid.jsonl",
                         "arith (multi) [exact, close]", "2026-01-01 00:00:00Z", "lora_target_modules",
                         "learning_rate", "0.0005"):
            assert expected in shown, (expected, shown)
        assert [r[0] for r in row_texts(screen.query_one("#checkpoints"))] == ["40", "30", "20", "10"]
        assert "export" in footer_actions(app)
        assert not {"cancel", "pause"} & footer_actions(app)  # a finished job cannot be cancelled or paused


async def test_failed_job_shows_its_error(shared_recorded_daemon) -> None:
    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot, recorded.FAILED)
        assert "out_of_memory: the worker was killed by SIGKILL" in static_text(screen.query_one("#overview-text"))


@pytest.mark.slow
async def test_rewards_tab_has_every_step_and_the_chart_toggles(shared_recorded_daemon) -> None:
    from rft_tui.widgets.reward_chart import RewardChart

    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot, recorded.SUCCEEDED)
        await pilot.press("2")
        table = screen.query_one("#metrics")
        await until(pilot, lambda: table.row_count == 40, what="40 metric rows")
        assert row_texts(table)[0][0] == "1" and row_texts(table)[-1][0] == "40"
        chart = screen.query_one(RewardChart)
        await until(pilot, lambda: "valid" in [s.name for s in chart.series], what="the validation line")
        names = lambda: [s.name for s in chart.series]  # noqa: E731
        assert names() == ["train", "train (smoothed)", "valid"]
        assert [p[0] for p in chart.series[2].points] == [0, 10, 20, 30, 40]
        await pilot.press("g")
        assert {"train:exact", "train:close", "valid:exact", "valid:close"} <= set(names())
        await pilot.press("s")
        assert "train" not in names() and "train (smoothed)" in names()
        await pilot.press("s")
        assert "train" in names() and "train (smoothed)" not in names()
        assert {"toggle_smoothing", "toggle_graders"} <= footer_actions(app)
        assert "export" not in footer_actions(app)  # export belongs to the overview tab


@pytest.mark.slow
async def test_validation_compares_base_and_step_with_filter_sort_and_step_select(shared_recorded_daemon) -> None:
    from textual.widgets import Select

    from rft_tui.widgets.validation_table import ValidationTable

    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot, recorded.SUCCEEDED)
        await pilot.press("3")
        table = screen.query_one(ValidationTable)
        await until(pilot, lambda: table.row_count == 12, what="12 validation rows")
        summary = static_text(screen.query_one("#valid-summary"))
        assert "mean 0.392 → 0.617" in summary and "base vs step 40" in summary
        verdicts = [r.verdict for r in table.rows_shown]
        assert f"improved {verdicts.count('improved')}" in summary
        assert f"regressed {verdicts.count('regressed')}" in summary
        await pilot.press("f")  # improved only
        assert table.rows_shown and all(r.verdict == "improved" for r in table.rows_shown)
        assert all("improved" in row[-1] for row in row_texts(table))
        await pilot.press("f")  # regressed only
        assert all(r.verdict == "regressed" for r in table.rows_shown)
        await pilot.press("f", "f")  # back to all
        await pilot.press("o")  # sort by change
        changes = [r.change for r in table.rows_shown]
        assert changes == sorted(changes) and len(changes) == 12
        select = screen.query_one("#valid-step", Select)
        select.value = 10
        await until(pilot, lambda: "base vs step 10" in static_text(screen.query_one("#valid-summary")),
                    what="step 10 to be compared")
        assert all(r.selected is not None and r.selected.step == 10 for r in table.rows_shown)


@pytest.mark.slow
async def test_samples_tab_lists_completions_and_enter_shows_one_in_full(shared_recorded_daemon) -> None:
    from rft_tui.screens.text_modal import TextModal

    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot, recorded.SUCCEEDED)
        await pilot.press("4")
        table = screen.query_one("#samples-table")
        await until(pilot, lambda: table.row_count == 100, what="the 100 most recent samples")
        rows = row_texts(table)
        assert rows[-1][0] == "40" and "exact=" in rows[-1][2]
        table.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TextModal))
        body = app.screen.body.plain
        assert "Prompt" in body and "Completion" in body and "Sub-rewards" in body
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)


@pytest.mark.slow
async def test_events_tab_tails_events_and_the_worker_log(shared_recorded_daemon) -> None:
    from rft_tui.widgets.events_log import EventsLog, WorkerLog

    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot, recorded.SUCCEEDED)
        await pilot.press("5")
        events = screen.query_one(EventsLog)
        await until(pilot, lambda: len(events.lines) > 10, what="events")
        text = "\n".join(line.text for line in events.lines)
        assert "Validation at step 40" in text and "Checkpoint saved at step 40" in text and "Job succeeded" in text
        log = screen.query_one(WorkerLog)
        await until(pilot, lambda: "step 40/40" in "\n".join(log.lines), what="the worker log tail")


async def test_export_asks_where_and_reports_the_daemons_answer(shared_recorded_daemon, tmp_path: Path) -> None:
    from rft_tui.screens.prompt import PromptScreen

    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot, recorded.SUCCEEDED)
        await until(pilot, lambda: screen.query_one("#checkpoints").row_count == 4)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen), what="the export directory prompt")
        assert app.screen.value.endswith(f"{recorded.SUCCEEDED}-step-40")
        await pilot.press("escape")  # cancelled: nothing is exported
        await until(pilot, lambda: app.screen is screen)
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        app.screen.query_one("#prompt-input").value = str(tmp_path / "export")
        await pilot.press("enter")
        # the recorded checkpoints hold no real adapter: the daemon refuses, and the user reads why
        # (a real export is covered by the training engineer's tests); either way: one clear notification
        note = await until(pilot, lambda: next((n for n in app._notifications if "export" in n.message.lower()
                                                and "Exporting" not in n.message), None), 90, what="the answer")
        assert "Traceback" not in note.message, note.message
        assert "Exported ftckpt-a1c3e5f70000-000040" in note.message or note.severity == "error"


@pytest.mark.slow
async def test_running_job_can_be_paused_from_its_screen(recorded_daemon) -> None:
    from rft_tui.screens.confirm import ConfirmScreen

    app = make_app(recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot, recorded.RUNNING)
        assert {"cancel", "pause"} <= footer_actions(app)
        await pilot.press("p")
        await until(pilot, lambda: screen.view.job.status is api.JobStatus.paused, 30, what="the job to pause")
        assert "cancel" in footer_actions(app) and "pause" in footer_actions(app)  # paused: resume, cancel
        # the user is told when the pause has happened (a checkpoint at a step boundary), not only that it was asked
        done = await until(pilot, lambda: [n for n in app._notifications if n.title == "Pause done"], 30,
                           what="the pause-done notification")
        assert done[0].message == f"{recorded.RUNNING} paused (checkpointed; resume continues from there)"
        assert not app.awaiting
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: screen.view.job.status is api.JobStatus.cancelled, 30)
        assert not {"cancel", "pause"} & footer_actions(app)
        await until(pilot, lambda: [n for n in app._notifications if n.title == "Cancel done"], 30,
                    what="the cancel-done notification")


@pytest.mark.slow
async def test_rewards_tab_gains_rows_live_from_a_worker(daemon_factory, tmp_path: Path) -> None:
    gate = tmp_path / "go-on"  # the worker holds before step 21 until the test has seen the first 20 rows
    fake_worker_daemon = daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker",
                                             "RFT_FAKE_STEP_S": "0.1", "RFT_FAKE_HOLD_AT_STEP": "21",
                                             "RFT_FAKE_HOLD_GATE": str(gate)})
    app = make_app(fake_worker_daemon, clock=__import__("time").time)
    with fake_worker_daemon.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=40, eval_interval=10))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _open(pilot, job.id)
        await pilot.press("2")
        table = screen.query_one("#metrics")
        counts: list[int] = []

        def seen(n: int) -> bool:
            counts.append(table.row_count)
            return table.row_count == n

        await until(pilot, lambda: seen(20), 60, what="the first 20 steps, live")
        assert screen.view.job.status is api.JobStatus.running  # shown while the job runs, not at its end
        gate.touch()
        await until(pilot, lambda: seen(40) and screen.view.job.status is api.JobStatus.succeeded, 60,
                    what="all 40 steps and the job to succeed")
        assert counts == sorted(counts)  # rows were only ever appended
        assert [r[0] for r in row_texts(table)] == [str(i) for i in range(1, 41)]
        chart = screen.query_one("#reward-chart")
        # the validation series refreshes on its own event: wait for the last pass rather than racing it
        await until(pilot, lambda: [p[0] for p in chart.series[-1].points][-1:] == [40], 30,
                    what="the step-40 validation point on the chart")
        assert [p[0] for p in chart.series[-1].points] == [0, 10, 20, 30, 40]
