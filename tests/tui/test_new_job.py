"""New-job form against a real daemon: defaults, pre-submit checks, errors next to fields, create, duplicate."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import api
from tests.support.daemon_proc import DaemonProcess
from tests.support.jobs import EXACT_GRADER, arithmetic_rows, write_jsonl
from tests.tui.conftest import make_app, screen_settled, until


@pytest.fixture(scope="module")
def form_daemon() -> Iterator[tuple[DaemonProcess, dict[str, str]]]:
    """A daemon whose jobs run the fake worker, with train/valid files (and an overlapping one) and graders."""
    home = Path(tempfile.mkdtemp(prefix="rft-nj-"))
    d = DaemonProcess(home, env={"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_CANCEL_GRACE_S": "3"})
    d.start()
    (d.paths.graders / "exact.json").write_text(json.dumps(EXACT_GRADER, indent=2))
    (d.paths.graders / "needs_label.json").write_text(json.dumps({**EXACT_GRADER, "reference": "{{item.label}}"}))
    with d.client() as c:
        ids = {
            "train": c.import_file(str(write_jsonl(home / "a_train.jsonl", arithmetic_rows(10, 40)))).id,
            "valid": c.import_file(str(write_jsonl(home / "b_valid.jsonl", arithmetic_rows(60, 10)))).id,
            "overlap": c.import_file(str(write_jsonl(home / "c_overlap.jsonl", arithmetic_rows(20, 5)))).id,
        }
    yield d, ids
    d.stop()
    from tests.support.daemon_proc import kill_job_workers

    kill_job_workers(d.paths)
    shutil.rmtree(home, ignore_errors=True)


async def _form(pilot: Any, prefill: api.FineTuningJob | None = None) -> Any:
    pilot.app.action_new_job(prefill)
    screen = await until(pilot, lambda: pilot.app.screen if type(pilot.app.screen).__name__ == "NewJobScreen"
                         else None, what="the new-job form")
    await until(pilot, lambda: screen.files and screen.grader_files, what="files and graders in the form")
    await until(pilot, lambda: screen.local_models is not None, what="the models here")
    await pilot.pause()
    return screen


def _fill(screen: Any, train: str, valid: str | None, grader: str | None = "exact.json") -> None:
    screen.query_one("#nj-training_file").value = train
    if valid:
        screen.query_one("#nj-validation_file").value = valid
    if grader:
        screen.query_one("#nj-grader").value = grader


def _error(screen: Any, field: str) -> str:
    return str(screen.query_one(f"#err-{field.replace('.', '-')}").render())


@pytest.mark.slow
async def test_defaults_then_create_with_ctrl_s_opens_the_job(
        form_daemon: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, ids = form_daemon
    app = make_app(d, stream=False)
    async with app.run_test(size=(110, 40)) as pilot:
        screen = await _form(pilot)
        assert screen.query_one("#nj-model").value == "builtin:tiny-arith"
        hp = screen.query_one("#nj-hyperparameters").values()
        assert set(hp) == set(api.HYPERPARAMETER_NAMES) and set(hp.values()) == {"auto"}
        _fill(screen, ids["train"], ids["valid"])
        screen.query_one("#hp-batch_size").value = "4"
        screen.query_one("#nj-suffix").value = "tui-test"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: type(app.screen).__name__ == "JobScreen", timeout=30, what="the new job's screen")
        with d.client() as c:
            job = c.list_jobs(limit=1).data[0]
        assert job.training_file == ids["train"] and job.validation_file == ids["valid"]
        assert job.model == "builtin:tiny-arith" and job.user_provided_suffix == "tui-test"
        assert job.method["reinforcement"]["grader"] == EXACT_GRADER
        assert job.method["reinforcement"]["hyperparameters"]["batch_size"] == 4


@pytest.mark.slow
async def test_problems_show_next_to_their_fields_and_the_form_stays(
        form_daemon: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, ids = form_daemon
    app = make_app(d, stream=False)
    async with app.run_test(size=(110, 40)) as pilot:
        screen = await _form(pilot)
        with d.client() as c:
            jobs_before = len(c.list_jobs(limit=100).data)
        # nothing chosen: client-side errors at the fields
        await pilot.press("ctrl+s")
        assert "choose the training file" in _error(screen, "training_file")
        assert "grader" in _error(screen, "grader")
        # an invalid hyperparameter, caught before anything is sent
        _fill(screen, ids["train"], ids["overlap"])
        screen.query_one("#hp-batch_size").value = "-2"
        await pilot.press("ctrl+s")
        assert "positive integer" in _error(screen, "hp.batch_size")
        assert not screen.query_one("#nj-hyper").collapsed  # opened to show it
        # overlapping validation file: the pre-submit check says so at the validation file
        screen.query_one("#hp-batch_size").value = "auto"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "in the training file" in _error(screen, "validation_file"),
                    what="the overlap problem")
        # a grader using a field the rows lack
        _fill(screen, ids["train"], ids["valid"], "needs_label.json")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "label" in _error(screen, "grader"), what="the missing item field at the grader")
        # the daemon's own refusal lands at the field its `param` names
        _fill(screen, ids["train"], ids["valid"], "exact.json")
        screen.query_one("#hp-num_generations").value = "1"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "at least 2" in _error(screen, "hp.num_generations"), what="the daemon's error")
        screen.query_one("#hp-num_generations").value = "auto"
        screen.query_one("#nj-model").value = "builtin:nope"
        screen.query_one("#nj-submit").press()
        await until(pilot, lambda: "builtin:nope" in _error(screen, "model"),
                    what="the unknown model at the model field")
        assert type(app.screen).__name__ == "NewJobScreen"
        with d.client() as c:
            assert len(c.list_jobs(limit=100).data) == jobs_before


async def test_check_checks_the_model(form_daemon: tuple[DaemonProcess, dict[str, str]]) -> None:
    """Check (ctrl+k) says what Create would: a misspelled model is caught with a suggestion, nothing is created."""
    d, ids = form_daemon
    app = make_app(d, stream=False)
    async with app.run_test(size=(110, 40)) as pilot:
        screen = await _form(pilot)
        with d.client() as c:
            jobs_before = len(c.list_jobs(limit=100).data)
        notes = screen.query_one("#nj-notes")
        _fill(screen, ids["train"], ids["valid"])
        for typo in ("builtin:tiny-arithh", "tiny-arith"):
            screen.query_one("#nj-model").value = typo
            await pilot.press("ctrl+k")
            await until(pilot, lambda: "did you mean 'builtin:tiny-arith'" in _error(screen, "model").lower(),
                        what=f"the model check's suggestion for {typo}")
            await until(pilot, lambda: not screen.busy, what="the check to finish")
            assert "look good" not in str(notes.render())
        screen.query_one("#nj-model").value = "builtin:tiny-arith"
        await pilot.press("ctrl+k")
        await until(pilot, lambda: "look good" in str(notes.render()), what="a clean check")
        assert _error(screen, "model") == ""
        with d.client() as c:
            assert len(c.list_jobs(limit=100).data) == jobs_before


@pytest.mark.slow
async def test_duplicate_prefills_from_the_job(form_daemon: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, ids = form_daemon
    grader = {**EXACT_GRADER, "name": "dup"}
    with d.client() as c:
        job = c.create_job({"model": "builtin:tiny-arith", "training_file": ids["train"],
                            "validation_file": ids["valid"],
                            "method": {"type": "reinforcement", "reinforcement": {
                                "grader": grader, "hyperparameters": {"batch_size": 8, "lora_r": 4}}}})
    app = make_app(d, stream=False)
    async with app.run_test(size=(110, 40)) as pilot:
        screen = await _form(pilot, prefill=job)
        assert screen.query_one("#nj-training_file").value == ids["train"]
        assert screen.query_one("#nj-validation_file").value == ids["valid"]
        assert screen.query_one("#nj-grader").value == "__job_grader__"
        hp = screen.query_one("#nj-hyperparameters").values()
        assert hp["batch_size"] == "8" and hp["lora_r"] == "4" and hp["n_epochs"] == "auto"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: type(app.screen).__name__ == "JobScreen", timeout=30, what="the duplicate job")
        with d.client() as c:
            dup = c.list_jobs(limit=1).data[0]
        assert dup.id != job.id and dup.method["reinforcement"]["grader"] == grader
        assert dup.method["reinforcement"]["hyperparameters"]["lora_r"] == 4


@pytest.mark.slow
async def test_tools_field_takes_the_agent_rft_tool_spec(form_daemon: tuple[DaemonProcess, dict[str, str]],
                                                         tmp_path: Path) -> None:
    """The tools field (inline JSON or a file): bad text and bad specs are shown at it; a good one is sent."""
    d, ids = form_daemon
    tools = {"add": {"type": "http", "url": "http://127.0.0.1:8765/add", "timeout_s": 5}}
    app = make_app(d, stream=False)
    async with app.run_test(size=(110, 40)) as pilot:
        screen = await _form(pilot)
        _fill(screen, ids["train"], ids["valid"])
        field = screen.query_one("#nj-tools")
        field.value = '{"add": {"type": "http", "url": '
        await pilot.press("ctrl+s")
        assert "line 1" in _error(screen, "tools")
        field.value = json.dumps({"add": {"type": "http", "url": "ftp://x"}})
        await pilot.press("ctrl+s")
        assert "add.url" in _error(screen, "tools") and "http" in _error(screen, "tools")
        spec_file = tmp_path / "tools.yaml"
        spec_file.write_text("add:\n  type: http\n  url: http://127.0.0.1:8765/add\n  timeout_s: 5\n")
        field.value = str(spec_file)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: type(app.screen).__name__ == "JobScreen", timeout=30, what="the job")
        with d.client() as c:
            job = c.get_job(c.list_jobs(limit=1).data[0].id)
        assert job.snapshot is not None and job.snapshot.tools["add"].model_dump()["timeout_s"] == 5
        # a duplicate carries the tools
        pilot.app.pop_screen()
        dup = await _form(pilot, prefill=job)
        assert json.loads(dup.query_one("#nj-tools").value)["add"]["url"] == tools["add"]["url"]


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
@pytest.mark.slow
def test_new_job_snapshot(form_daemon: tuple[DaemonProcess, dict[str, str]], snap_compare: Any,
                          size: tuple[int, int]) -> None:
    d, ids = form_daemon

    async def ready(pilot: Any) -> None:
        screen = await _form(pilot)
        _fill(screen, ids["train"], ids["valid"])
        screen.query_one("#hp-batch_size").value = "-2"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "positive" in _error(screen, "hp.batch_size"), what="error")
        screen.set_focus(None)  # no Input focused: its blinking cursor would make the snapshot flaky
        await pilot.pause()
        form = screen.query_one("#nj-form")
        form.scroll_home(animate=False)
        await until(pilot, lambda: form.scroll_y == 0, what="the form scrolled to the top")
        await screen_settled(pilot)

    assert snap_compare(make_app(d, stream=False), terminal_size=size, run_before=ready)


@pytest.mark.slow
async def test_cluster_picker_offers_the_configured_clusters_and_shows_the_refusal_at_it(
        form_daemon: tuple[DaemonProcess, dict[str, str]], tmp_path: Path) -> None:
    d, ids = form_daemon
    with d.client() as c:
        c.add_cluster({"name": "lab", "kind": "slurm", "storage": str(tmp_path), "processes_per_node": 2})
    try:
        app = make_app(d, stream=False)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await _form(pilot)
            picker = screen.query_one("#nj-cluster")
            await until(pilot, lambda: picker._options[1:], what="the clusters in the picker")
            assert [label for label, _ in picker._options[1:]] == ["lab (slurm, 1 x 2 CPU)"]
            _fill(screen, ids["train"], ids["valid"])
            picker.value = "lab"
            await pilot.press("ctrl+s")
            # this daemon listens only on its socket: the refusal names the field and the fix
            await until(pilot, lambda: "--tcp" in _error(screen, "cluster"), what="the no-TCP refusal at the picker")
            assert type(app.screen).__name__ == "NewJobScreen"
    finally:
        with d.client() as c:
            c.remove_cluster("lab")
