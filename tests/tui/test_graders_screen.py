"""Graders screen against a real daemon: list, edit + save (validated), reload on disk changes, playground."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon_proc import DaemonProcess
from tests.support.jobs import arithmetic_rows, write_jsonl
from tests.tui.conftest import make_app, until

REPO = Path(__file__).resolve().parents[2]
EXACT = (REPO / "examples" / "graders" / "exact_match.json").read_text()


@pytest.fixture(scope="module")
def graders_daemon(model_cache: Path) -> Iterator[tuple[DaemonProcess, str]]:
    """One daemon for the module with an imported arithmetic file; each test writes its own grader files."""
    home = Path(tempfile.mkdtemp(prefix="rft-gs-"))
    d = DaemonProcess(home, env={"RFT_MODEL_CACHE": str(model_cache)}).start()
    with d.client() as c:
        file_id = c.import_file(str(write_jsonl(home / "arith.jsonl", arithmetic_rows(10, 20)))).id
    yield d, file_id
    d.stop()
    shutil.rmtree(home, ignore_errors=True)


def _fresh_graders(d: DaemonProcess, files: dict[str, str]) -> Path:
    folder = d.paths.graders
    for old in folder.iterdir():
        old.unlink()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


async def _graders_screen(pilot: Any, opened: str) -> Any:
    await pilot.press("G")
    screen = await until(pilot, lambda: pilot.app.screen if type(pilot.app.screen).__name__ == "GradersScreen"
                         else None, what="the Graders screen")
    await until(pilot, lambda: screen.name_open == opened and screen.editor.text != "", what=f"{opened} open")
    return screen


async def _open(pilot: Any, screen: Any, name: str) -> None:
    listing = screen.query_one("#graders-list")
    listing.focus()
    listing.highlighted = [o.id for o in listing._options].index(name)
    await pilot.press("enter")
    await until(pilot, lambda: screen.name_open == name, what=f"{name} open")


async def test_lists_graders_edits_and_saves_with_validation(graders_daemon: tuple[DaemonProcess, str]) -> None:
    d, _ = graders_daemon
    folder = _fresh_graders(d, {"a_exact.json": EXACT, "b_broken.yaml": "type: [x\n"})
    app = make_app(d, stream=False)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await _graders_screen(pilot, "a_exact.json")
        labels = [str(o.prompt) for o in screen.query_one("#graders-list")._options]
        assert labels == ["✓ a_exact.json", "✗ b_broken.yaml"]
        assert screen.editor.text == EXACT
        # a spec error is saved but shown inline
        screen.editor.focus()
        screen.editor.load_text(EXACT.replace('"eq"', '"equals"'))
        await pilot.press("ctrl+s")
        errors = screen.query_one("#grader-errors")
        await until(pilot, lambda: "operation" in str(errors.render()), what="the spec error under the editor")
        assert '"equals"' in (folder / "a_exact.json").read_text()
        # unparseable JSON is refused with its line and column; the file on disk keeps the last good save
        screen.editor.load_text('{\n  "type": "string_check",\n  "name": \n}')
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "a_exact.json:4:1" in str(errors.render()), what="the parse error with line:col")
        assert '"equals"' in (folder / "a_exact.json").read_text()
        screen.editor.load_text(EXACT)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "valid grader" in str(errors.render()), what="a valid save")
        assert (folder / "a_exact.json").read_text() == EXACT
        await _open(pilot, screen, "b_broken.yaml")
        assert "b_broken.yaml:" in str(errors.render())
        # leaving with unsaved edits asks first
        screen.editor.insert("x: 1\n")
        screen.query_one("#graders-list").focus()
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the leave question")
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen, what="the editor still open")
        assert screen.dirty
        await pilot.press("escape", "y")
        await until(pilot, lambda: type(app.screen).__name__ == "JobsScreen", what="back on the jobs list")


async def test_reloads_on_disk_change_and_asks_when_edited(graders_daemon: tuple[DaemonProcess, str]) -> None:
    d, _ = graders_daemon
    folder = _fresh_graders(d, {"live.json": EXACT})
    app = make_app(d)  # with the live stream
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await _graders_screen(pilot, "live.json")
        await until(pilot, lambda: app.stream_connected, what="the stream")
        changed = EXACT.replace('"exact"', '"exact_v2"')
        (folder / "live.json").write_text(changed)  # another editor saves
        await until(pilot, lambda: screen.editor.text == changed, what="the editor to reload the file")
        # now with unsaved edits: the screen asks before reloading
        screen.editor.insert("\n")
        assert screen.dirty
        (folder / "live.json").write_text(EXACT)
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="the reload question")
        await pilot.press("y")
        await until(pilot, lambda: screen.editor.text == EXACT and not screen.dirty, what="the reloaded text")
        # a save that raced an outside edit is refused (409) and asks before overwriting
        screen.editor.insert(" ")
        (folder / "live.json").write_text(changed)
        os.utime(folder / "live.json", (screen.modified_at + 3, screen.modified_at + 3))
        screen.action_save()
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="a question")
        question = str(app.screen.query_one("#question").render())
        assert "changed on disk" in question


async def test_playground_runs_grader_on_a_row(graders_daemon: tuple[DaemonProcess, str]) -> None:
    d, file_id = graders_daemon
    _fresh_graders(d, {"exact.json": EXACT})
    app = make_app(d, stream=False)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await _graders_screen(pilot, "exact.json")
        await until(pilot, lambda: screen.query_one("#pg-file").value == file_id, what="the playground's file")
        screen.query_one("#pg-row").value = "3"
        await pilot.press("ctrl+r")
        result = screen.query_one("#pg-result")
        await until(pilot, lambda: "reward 1.0000" in str(result.render()), what="reward 1 for the row's answer")
        assert "'25'" in str(result.render()) and "errors none" in str(result.render())  # row 3: 12+13=25
        screen.query_one("#pg-sample").value = "26"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "reward 0.0000" in str(result.render()), what="reward 0 for a wrong sample")


def test_graders_screen_snapshot(graders_daemon: tuple[DaemonProcess, str], snap_compare: Any) -> None:
    d, file_id = graders_daemon
    _fresh_graders(d, {"exact.json": EXACT, "tolerance.py": (REPO / "examples/graders/numeric_tolerance.py").read_text()})

    async def ready(pilot: Any) -> None:
        screen = await _graders_screen(pilot, "exact.json")
        await until(pilot, lambda: screen.query_one("#pg-file").value == file_id, what="file")
        await until(pilot, lambda: "valid grader" in str(screen.query_one("#grader-errors").render()), what="valid")
        await pilot.pause()

    assert snap_compare(make_app(d, stream=False), terminal_size=(100, 30), run_before=ready)


async def test_new_grader_file_from_a_template(graders_daemon: tuple[DaemonProcess, str]) -> None:
    d, _ = graders_daemon
    folder = _fresh_graders(d, {"exact.json": EXACT})
    app = make_app(d, stream=False)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await _graders_screen(pilot, "exact.json")
        await pilot.press("ctrl+n", *"mine.py", "enter")
        await until(pilot, lambda: screen.name_open == "mine.py" and "def grade" in screen.editor.text,
                    what="the new python grader in the editor")
        assert "def grade(sample, item)" in (folder / "mine.py").read_text()
        await until(pilot, lambda: "valid grader" in str(screen.query_one("#grader-errors").render()), what="valid")
        await pilot.press("ctrl+n", *"bad.txt", "enter")
        assert not (folder / "bad.txt").exists() and screen.name_open == "mine.py"


@pytest.mark.slow
async def test_preflight_shows_the_reward_spread(graders_daemon: tuple[DaemonProcess, str]) -> None:
    """Real sampling on the built-in model (cached like the training tests' model)."""
    d, file_id = graders_daemon
    _fresh_graders(d, {"exact.json": EXACT})
    app = make_app(d, stream=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _graders_screen(pilot, "exact.json")
        await until(pilot, lambda: screen.query_one("#pg-file").value == file_id, what="the training file")
        await pilot.press("ctrl+f")
        result = screen.query_one("#pf-result")
        await until(pilot, lambda: "verdict" in str(result.render()), timeout=240, what="the pre-flight report")
        text = str(result.render())
        assert "builtin:tiny-arith: 16 rows x 8 completions" in text
        assert "zero-signal rows" in text and "reward mean" in text and "grader errors none" in text
        assert sum(line.count("█") for line in text.splitlines()) > 0  # the histogram has bars
