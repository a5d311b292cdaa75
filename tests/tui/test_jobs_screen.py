"""Jobs screen against a real daemon: recorded jobs in every state, filter, keys, live updates."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import api
from tests.support.jobs import job_request, make_files
from tests.tui import recorded
from tests.tui.conftest import footer_actions, make_app, row_texts, static_text, until


async def _loaded(pilot, n: int = len(recorded.JOBS)):
    await until(pilot, lambda: pilot.app.screen.table.row_count == n, what=f"{n} job rows")
    return pilot.app.screen


async def _select(pilot, job_id: str) -> None:
    table = pilot.app.screen.table
    table.move_cursor(row=table.get_row_index(job_id))
    await pilot.pause()


async def test_lists_every_job_newest_first_with_status_progress_and_rewards(shared_recorded_daemon) -> None:
    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await _loaded(pilot)
        rows = row_texts(screen.table)
        assert [r[1] for r in rows] == ["queued", "running", "paused", "cancelled", "failed", "succeeded ⚠1"]
        succeeded = rows[-1]
        assert succeeded[0] == "ftjob-a1c3e5f7"
        assert succeeded[8] == "arith-train.jsonl / arith-valid.jsonl"
        assert succeeded[2].startswith("40/40 ")
        assert succeeded[4] == "0.392 → 0.617"
        assert succeeded[5] == "2m00s" and succeeded[6] == "-"
        running = rows[1]
        assert running[2].startswith("25/60 ") and running[5] == "4m00s"  # started 240 s before the pinned clock
        assert running[6] == "5m36s"  # ETA: 240 s for 25 steps, 35 to go


@pytest.mark.slow
async def test_filter_narrows_and_escape_clears(shared_recorded_daemon) -> None:
    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _loaded(pilot)
        await pilot.press("slash", *"pau")
        await until(pilot, lambda: screen.table.row_count == 1, what="the filter to leave one row")
        assert row_texts(screen.table)[0][1] == "paused"
        await pilot.press("escape")
        await until(pilot, lambda: screen.table.row_count == len(recorded.JOBS), what="the filter to clear")
        await pilot.press("slash", *"zz")
        await until(pilot, lambda: "No job matches" in static_text(screen.query_one("#jobs-empty")))


async def test_actions_that_cannot_act_are_hidden(shared_recorded_daemon) -> None:
    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        await _loaded(pilot)
        await _select(pilot, recorded.SUCCEEDED)
        assert "duplicate" in footer_actions(app)
        assert app.screen.active_bindings["enter"].binding.description == "Open"
        assert not {"cancel", "pause"} & footer_actions(app)
        await _select(pilot, recorded.RUNNING)
        assert {"cancel", "pause"} <= footer_actions(app)


async def test_enter_opens_the_job_and_escape_comes_back(shared_recorded_daemon) -> None:
    from rft_tui.screens.job import JobScreen
    from rft_tui.screens.jobs import JobsScreen

    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        await _loaded(pilot)
        await _select(pilot, recorded.FAILED)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        assert app.screen.job_id == recorded.FAILED
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, JobsScreen))


@pytest.mark.slow
async def test_cancel_asks_first_then_the_row_turns_cancelled_in_place(recorded_daemon) -> None:
    from rft_tui.screens.confirm import ConfirmScreen

    app = make_app(recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _loaded(pilot)
        await _select(pilot, recorded.RUNNING)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # changed my mind: nothing happens
        await until(pilot, lambda: app.screen is screen)
        with recorded_daemon.client() as c:
            assert c.get_job(recorded.RUNNING).status is api.JobStatus.running
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        row = lambda: screen.table.get_row(recorded.RUNNING)  # noqa: E731
        await until(pilot, lambda: str(row()[1]) == "cancelled", 30, what="the row to show cancelled")
        assert screen.table.row_count == len(recorded.JOBS)
        # the queued job got the free slot and its row follows, without reloading the table
        await until(pilot, lambda: str(screen.table.get_row(recorded.QUEUED)[1]) == "running", 30)


@pytest.mark.slow
async def test_pause_key_resumes_a_paused_job(recorded_daemon) -> None:
    app = make_app(recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _loaded(pilot)
        await _select(pilot, recorded.PAUSED)
        await pilot.press("p")
        # one job already runs, so the resumed job waits in the queue
        await until(pilot, lambda: str(screen.table.get_row(recorded.PAUSED)[1]) == "queued", 20)
        # queued is not running yet: the app still waits to tell the user the job runs again
        note = await until(pilot, lambda: [n for n in app._notifications if "Resume requested" in n.message], 20)
        assert "waiting for the job to be running" in note[0].message and app.awaiting == {recorded.PAUSED: "resume"}
        with recorded_daemon.client() as c:
            assert c.get_job(recorded.PAUSED).status is api.JobStatus.queued


@pytest.mark.slow
async def test_duplicate_and_new_open_the_new_job_form(shared_recorded_daemon) -> None:
    import pytest

    try:
        from rft_tui.screens.new_job import NewJobScreen
    except ImportError:
        pytest.xfail("rft_tui.screens.new_job (the New-job form) is not in the tree yet")
    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(100, 30)) as pilot:
        await _loaded(pilot)
        await _select(pilot, recorded.SUCCEEDED)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))
        prefill = getattr(app.screen, "prefill", None)
        assert prefill is not None and prefill.id == recorded.SUCCEEDED
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, NewJobScreen))
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewJobScreen))


@pytest.mark.slow
async def test_a_new_job_appears_on_top_and_its_row_follows_the_worker(fake_worker_daemon, tmp_path: Path) -> None:
    app = make_app(fake_worker_daemon, clock=__import__("time").time)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await until(pilot, lambda: "No jobs yet" in static_text(screen.query_one("#jobs-empty")))
        with fake_worker_daemon.client() as c:
            train, valid = make_files(c, tmp_path)
            job = c.create_job(job_request(train, valid, max_steps=30, eval_interval=10))
        await until(pilot, lambda: screen.table.row_count == 1, what="the new job's row")
        seen_steps: set[int] = set()

        def finished() -> bool:
            cells = screen.table.get_row(job.id)
            seen_steps.add(int(str(cells[2]).split("/")[0]))
            return str(cells[1]) == "succeeded"

        await until(pilot, finished, 60, what="the job to succeed on screen")
        assert str(screen.table.get_row(job.id)[2]).startswith("30/30")
        assert len(seen_steps) >= 2  # the progress cell moved while the job ran


def cut_cells(table) -> list[tuple[str, str, str]]:
    """(row, column, text) of every cell wider than its column: what a user would see cut short."""
    from rich.cells import cell_len
    from rich.text import Text

    cut = []
    for row_key in table.rows:
        for column_key, column in table.columns.items():
            value = table.get_cell(row_key, column_key)
            plain = value.plain if isinstance(value, Text) else str(value)
            room = column.content_width if column.auto_width else column.width
            if cell_len(plain) > room:
                cut.append((row_key.value, column_key.value, plain))
    return cut


@pytest.mark.slow
async def test_status_and_eta_cells_are_never_cut_as_they_change(daemon_factory, tmp_path: Path) -> None:
    """A table first drawn with a short status and no ETA widens when `cancelled` and `1m29s` arrive."""
    d = daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_FAKE_STEP_S": "0.3",
                            "RFT_FAKE_STARTUP_S": "3", "RFT_CANCEL_GRACE_S": "3"})
    with d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=400, eval_interval=200))
        # first drawn while the worker starts: status `running`, ETA `-` (the narrowest the columns get)
        from tests.support.daemon_proc import wait_until

        wait_until(lambda: c.get_job(job.id).status is api.JobStatus.running, 30, what="the job to run")
    app = make_app(d, clock=__import__("time").time)
    async with app.run_test(size=(200, 30)) as pilot:
        screen = await _loaded(pilot, 1)
        assert str(screen.table.get_row(job.id)[1]) == "running"
        await until(pilot, lambda: "m" in str(screen.table.get_cell(job.id, "eta")), 60, what="an ETA in minutes")
        assert cut_cells(screen.table) == []
        with d.client() as c:
            c.cancel_job(job.id)
        await until(pilot, lambda: str(screen.table.get_cell(job.id, "status")) == "cancelled", 30,
                    what="the row to say cancelled")
        assert cut_cells(screen.table) == []
