"""Validation statistics and re-scoring in the TUI (80x24), against a real daemon on the recorded store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui import recorded
from tests.tui.conftest import footer_actions, make_app, static_text, type_text, until

ZERO_SOURCE = "def grade(sample, item):\n    return 0.0\n"


async def _open(pilot, job_id: str):
    from rft_tui.screens.job import JobScreen

    pilot.app.action_open_job(job_id)
    await until(pilot, lambda: isinstance(pilot.app.screen, JobScreen) and pilot.app.screen.view.job is not None)
    return pilot.app.screen


@pytest.mark.slow
async def test_validation_header_shows_the_change_with_its_interval_and_p(shared_recorded_daemon) -> None:
    with shared_recorded_daemon.client() as c:
        expected = c.validation_compare(recorded.SUCCEEDED)
        rescored = bool(c.list_rescorings(recorded.SUCCEEDED).data)  # by another test of the module, run before
    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot, recorded.SUCCEEDED)
        await pilot.press("3")
        header = screen.query_one("#valid-compare")
        await until(pilot, lambda: expected.headline() in static_text(header, 80), what="the compare line")
        text = static_text(header, 80)
        assert f"vs base: {expected.headline()}" in text and "exact" in text and "close" in text
        assert "rescore" in footer_actions(app)
        assert ("cycle_scores" in footer_actions(app)) is rescored  # v cycles scores only when there are others


@pytest.mark.slow
async def test_rescore_from_the_validation_tab_shows_the_rescoring_beside_the_original(
        shared_recorded_daemon, tmp_path: Path) -> None:
    from rft_tui.screens.grader_picker import GraderPickerScreen
    from rft_tui.screens.text_modal import TextModal
    from rft_tui.widgets.validation_table import ValidationTable

    grader = tmp_path / "zero.py"
    grader.write_text(ZERO_SOURCE)
    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot, recorded.SUCCEEDED)
        await pilot.press("3")
        table = screen.query_one(ValidationTable)
        await until(pilot, lambda: table.row_count == 12, what="12 validation rows")
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, GraderPickerScreen), what="the grader picker")
        path_box = app.screen.query_one("#grader-path")
        path_box.focus()
        await until(pilot, lambda: path_box.has_focus, what="the path box focused")
        await type_text(pilot, str(grader))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TextModal), timeout=60, what="the re-scoring's result")
        body = static_text(app.screen.query_one("#text-body"), 80)
        assert "Re-scoring 'zero'" in body and "original scores are unchanged" in body and "-> 0.000" in body
        await pilot.press("escape")
        header = screen.query_one("#valid-compare")
        await until(pilot, lambda: "re-scoring zero" in static_text(header, 80), what="the re-scoring shown")
        await until(pilot, lambda: table.rows_shown and all(r.selected is not None and r.selected.reward == 0.0
                                                             for r in table.rows_shown), what="re-scored rows")
        assert "cycle_scores" in footer_actions(app)
        await pilot.press("v")  # back to the original scores, which never changed
        await until(pilot, lambda: "re-scoring" not in static_text(header, 80) and "vs base" in static_text(header, 80),
                    what="the original scores again")
        await until(pilot, lambda: any(r.selected is not None and r.selected.reward > 0 for r in table.rows_shown),
                    what="original rewards")


@pytest.mark.slow
async def test_rescore_a_chosen_job_from_the_graders_screen(shared_recorded_daemon) -> None:
    from rft_tui.screens.grader_picker import JobPickerScreen
    from rft_tui.screens.text_modal import TextModal

    folder = shared_recorded_daemon.paths.graders
    (folder / "only_exact.json").write_text('{"type": "string_check", "name": "only_exact", "operation": "eq", '
                                            '"input": "{{sample.output_text}}", "reference": "{{item.answer}}"}')
    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("G")
        screen = await until(pilot, lambda: pilot.app.screen if type(pilot.app.screen).__name__ == "GradersScreen"
                             else None, what="the Graders screen")
        await until(pilot, lambda: screen.name_open == "only_exact.json" and screen.editor.text, what="grader open")
        assert "rescore_job" in footer_actions(app)
        await pilot.press("ctrl+b")
        picker = await until(pilot, lambda: app.screen if isinstance(app.screen, JobPickerScreen) else None,
                             what="the job picker")
        ids = [o.id for o in picker.query_one("#job-options")._options]
        assert recorded.SUCCEEDED in ids and recorded.QUEUED not in ids  # only jobs with validation outputs
        options = picker.query_one("#job-options")
        await pilot.click("#rescore-samples")  # the samples box, with the mouse this time
        options.focus()
        options.highlighted = ids.index(recorded.SUCCEEDED)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TextModal), timeout=60, what="the re-scoring's result")
        body = static_text(app.screen.query_one("#text-body"), 80)
        assert "Re-scoring 'only_exact'" in body and "vs 0:" in body
    with shared_recorded_daemon.client() as c:
        mine = [r for r in c.list_rescorings(recorded.SUCCEEDED).data if r.name == "only_exact"]
        assert mine and mine[0].compare is not None
        assert mine[0].samples is not None and mine[0].samples.samples > 0  # the box was ticked
        # exact match is the multi grader's `exact` sub-grader: the re-scored means are its original means
        for step in mine[0].steps:
            page = c.validation(recorded.SUCCEEDED, step=step.step)
            assert step.mean == sum(r.sub_rewards["exact"] for r in page.data) / len(page.data)


@pytest.mark.slow
async def test_rescore_dialog_can_regrade_the_training_samples_too(shared_recorded_daemon, tmp_path: Path) -> None:
    """The dialog's samples box (ctrl+t, or a click) sends `samples: true`: the result has the training samples'
    means, the TUI says so, and the box is on screen at 80x24."""
    from textual.widgets import Checkbox

    from rft_tui.screens.grader_picker import GraderPickerScreen
    from rft_tui.screens.text_modal import TextModal

    grader = tmp_path / "zero_samples.py"
    grader.write_text(ZERO_SOURCE)
    app = make_app(shared_recorded_daemon)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open(pilot, recorded.SUCCEEDED)
        await pilot.press("3")
        await until(pilot, lambda: screen.view.validation_steps, what="validation steps")
        await pilot.press("R")
        picker = await until(pilot, lambda: app.screen if isinstance(app.screen, GraderPickerScreen) else None,
                             what="the grader picker")
        box = picker.query_one("#rescore-samples", Checkbox)
        await until(pilot, lambda: box.region.height > 0, what="the samples box laid out")
        assert box.value is False and picker.region.contains_region(box.region)  # on screen at 80x24
        path_box = picker.query_one("#grader-path")
        path_box.focus()
        await until(pilot, lambda: path_box.has_focus, what="the path box focused")
        await pilot.press("ctrl+t")  # toggles from the path box, where the user types
        assert box.value is True
        await type_text(pilot, str(grader))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TextModal), timeout=60, what="the re-scoring's result")
        body = static_text(app.screen.query_one("#text-body"), 80)
        assert "Re-scoring 'zero_samples'" in body and "training samples: " in body and "-> 0.000 over" in body
    with shared_recorded_daemon.client() as c:
        [mine] = [r for r in c.list_rescorings(recorded.SUCCEEDED).data if r.name == "zero_samples"]
        samples = c.samples(recorded.SUCCEEDED, limit=10_000).data
    assert mine.samples is not None and mine.samples.mean == 0.0 and mine.samples.samples == len(samples) > 0
