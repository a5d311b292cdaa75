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
from tests.tui.conftest import make_app, screen_settled, type_text, until

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
    listing.highlighted = [o.id for o in listing._options].index("home:" + name)
    await pilot.press("enter")
    await until(pilot, lambda: screen.name_open == name, what=f"{name} open")


@pytest.mark.slow
async def test_lists_graders_edits_and_saves_with_validation(graders_daemon: tuple[DaemonProcess, str]) -> None:
    d, _ = graders_daemon
    folder = _fresh_graders(d, {"a_exact.json": EXACT, "b_broken.yaml": "type: [x\n"})
    app = make_app(d, stream=False)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await _graders_screen(pilot, "a_exact.json")
        labels = [str(o.prompt) for o in screen.query_one("#graders-list")._options if (o.id or "").startswith("home:")]
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


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def guesses_file(graders_daemon: tuple[DaemonProcess, str]) -> str:
    """20 arithmetic rows with a `guess` column: right on even rows, off by one on odd ones."""
    d, _ = graders_daemon
    rows = arithmetic_rows(10, 20)
    for i, row in enumerate(rows):
        row["guess"] = row["answer"] if i % 2 == 0 else str(int(row["answer"]) + 1)
    with d.client() as c:
        return str(c.import_file(str(write_jsonl(d.home / "guesses.jsonl", rows))).id)


async def test_playground_runs_the_grader_over_a_whole_file(graders_daemon: tuple[DaemonProcess, str],
                                                            guesses_file: str) -> None:
    d, _ = graders_daemon
    _fresh_graders(d, {"exact.json": EXACT})
    app = make_app(d, stream=False)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _graders_screen(pilot, "exact.json")
        await until(pilot, lambda: screen.files, what="the files")
        screen.query_one("#pg-file").value = guesses_file
        screen.query_one("#pg-field").value = "guess"
        await pilot.press("ctrl+r")
        result = screen.query_one("#pg-result")
        await until(pilot, lambda: "20 of 20 rows" in str(result.render()), what="every row graded")
        text = str(result.render())
        assert "column 'guess'" in text and "mean 0.500" in text and "reward 1.0 50% of rows" in text
        assert "errors none" in text and "lowest rows" in text and "line 2: 0.000" in text  # line 2: 11+12 guessed 24
        bars = {line.split()[0]: line.split()[-1] for line in text.splitlines() if "–" in line}
        assert bars["0.0–0.1"] == "10" and bars["0.9–1.0"] == "10"  # the distribution: half right, half wrong
        # a column the rows lack: said in the playground, not a traceback
        screen.query_one("#pg-field").value = "nope"
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "nope" in str(result.render()) and "20 of 20" not in str(result.render()),
                    what="the missing column reported")


@pytest.mark.slow
async def test_tab_indents_and_ctrl_g_moves_to_the_playground(graders_daemon: tuple[DaemonProcess, str]) -> None:
    from tests.tui.conftest import footer_actions

    d, _ = graders_daemon
    _fresh_graders(d, {"exact.json": EXACT})
    app = make_app(d, stream=False)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await _graders_screen(pilot, "exact.json")
        assert "playground" in footer_actions(app)
        screen.editor.focus()
        screen.editor.move_cursor((1, 0))
        await pilot.press("tab")
        assert screen.editor.has_focus and screen.editor.document.get_line(1).startswith("    " + '  "type"')
        await pilot.press("ctrl+g")
        await until(pilot, lambda: app.focused is not None and app.focused.id == "pg-file", what="the playground")
        await pilot.press("ctrl+g")
        await until(pilot, lambda: screen.editor.has_focus, what="back in the editor")
        await pilot.press("f1")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen", what="help")
        rows = {r[1]: r for r in app.screen.rows}
        assert rows["Playground"][0] == "^g" and "Tab indents" in rows["Playground"][2]


@pytest.mark.slow
async def test_open_any_grader_file_and_the_examples(graders_daemon: tuple[DaemonProcess, str],
                                                     tmp_path: Path) -> None:
    d, _ = graders_daemon
    folder = _fresh_graders(d, {"exact.json": EXACT})
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("type: string_check\nname: yes\ninput: '{{sample.output_text}}'\nreference: 'yes'\n"
                         "operation: eq\n")
    app = make_app(d, stream=False)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = await _graders_screen(pilot, "exact.json")
        # any file by path: open, edit, save back to that file
        await pilot.press("ctrl+o")
        box = screen.query_one("#grader-open-path")
        await until(pilot, lambda: box.has_focus, what="the path box focused")
        await type_text(pilot, str(tmp_path / "elsew"))  # the path completes: → takes the suggestion
        await until(pilot, lambda: box._suggestion == str(elsewhere), what="the path completed")
        await pilot.press("right", "enter")
        await until(pilot, lambda: screen.name_open == str(elsewhere) and "reference: 'yes'" in screen.editor.text,
                    what="the file opened by path")
        await until(pilot, lambda: "valid grader" in str(screen.query_one("#grader-errors").render()), what="valid")
        screen.editor.load_text(screen.editor.text.replace("'yes'", "'no'"))
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "reference: 'no'" in elsewhere.read_text(), what="saved to the same path")
        assert not (folder / "elsewhere.yaml").exists()
        # the examples are listed; one opens, and saving keeps a copy in $RFT_HOME/graders
        listing = screen.query_one("#graders-list")
        ids = [o.id or "" for o in listing._options]
        example = next(i for i in ids if i.endswith("examples/graders/numeric_tolerance.py"))
        listing.focus()
        listing.highlighted = ids.index(example)
        await pilot.press("enter")
        await until(pilot,
                    lambda: screen.name_open == example.removeprefix("path:") and "def grade" in screen.editor.text,
                    what="the example open")
        shipped = Path(example.removeprefix("path:")).read_text()
        await pilot.press("ctrl+s")
        await until(pilot,
                    lambda: (folder / "numeric_tolerance.py").exists() and screen.name_open == "numeric_tolerance.py",
                    what="a copy saved in RFT_HOME/graders")
        assert (folder / "numeric_tolerance.py").read_text() == shipped
        assert Path(example.removeprefix("path:")).read_text() == shipped  # the example itself is unchanged
        # a path that is not a grader file is refused with a message
        await pilot.press("ctrl+o")
        await until(pilot, lambda: box.has_focus, what="the path box focused")
        await type_text(pilot, str(tmp_path / "notes.txt"))
        await pilot.press("enter")
        assert screen.name_open == "numeric_tolerance.py"
        # a grader path that does not exist: one notification naming it; the open grader stays
        await pilot.press("escape", "ctrl+o")
        await until(pilot, lambda: box.has_focus, what="the path box focused")
        await type_text(pilot, str(tmp_path / "missing.json"))
        await pilot.press("enter")
        await until(pilot, lambda: any("missing.json" in n.message for n in app._notifications),
                    what="a notification naming the missing file")
        assert screen.name_open == "numeric_tolerance.py"


@pytest.mark.slow
def test_graders_screen_snapshot(graders_daemon: tuple[DaemonProcess, str], snap_compare: Any) -> None:
    d, file_id = graders_daemon
    _fresh_graders(d, {"exact.json": EXACT,
                       "tolerance.py": (REPO / "examples/graders/numeric_tolerance.py").read_text()})

    async def ready(pilot: Any) -> None:
        screen = await _graders_screen(pilot, "exact.json")
        await until(pilot, lambda: screen.files, what="files")
        screen.query_one("#pg-file").value = file_id
        await until(pilot, lambda: "valid grader" in str(screen.query_one("#grader-errors").render()), what="valid")
        await screen_settled(pilot)

    assert snap_compare(make_app(d, stream=False), terminal_size=(120, 34), run_before=ready)


@pytest.mark.parametrize("pane", ["editor", "playground"])
@pytest.mark.slow
def test_graders_screen_at_80x24(graders_daemon: tuple[DaemonProcess, str], snap_compare: Any, pane: str) -> None:
    """SSH-sized terminal: the list on top, the editor (or, ctrl+g, the playground with a file's results) below."""
    d, file_id = graders_daemon
    _fresh_graders(d, {"exact.json": EXACT,
                       "tolerance.py": (REPO / "examples/graders/numeric_tolerance.py").read_text()})

    async def ready(pilot: Any) -> None:
        screen = await _graders_screen(pilot, "exact.json")
        await until(pilot, lambda: screen.files, what="files")
        screen.query_one("#pg-file").value = file_id
        await until(pilot, lambda: "valid grader" in str(screen.query_one("#grader-errors").render()), what="valid")
        assert screen.has_class("-narrow")
        assert screen.editor.size.width >= 76  # was 16 columns beside the list and the playground
        if pane == "playground":
            await pilot.press("ctrl+g", "ctrl+r")
            await until(pilot, lambda: "20 of 20 rows" in str(screen.query_one("#pg-result").render()), what="results")
            assert screen.playground.size.width >= 76 and screen.playground.size.height >= 12
            screen.playground.scroll_end(animate=False)
            screen.set_focus(None)
        await screen_settled(pilot)

    assert snap_compare(make_app(d, stream=False), terminal_size=(80, 24), run_before=ready)


@pytest.mark.slow
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
        await until(pilot, lambda: screen.files, what="the files")
        screen.query_one("#pg-file").value = file_id
        await pilot.press("ctrl+f")
        result = screen.query_one("#pf-result")
        await until(pilot, lambda: "verdict" in str(result.render()), timeout=240, what="the pre-flight report")
        text = str(result.render())
        assert "builtin:tiny-arith: 16 rows x 8 completions" in text
        assert "zero-signal rows" in text and "reward mean" in text and "grader errors none" in text
        assert sum(line.count("█") for line in text.splitlines()) > 0  # the histogram has bars
        assert "signal map" in text and "probes (should score 0" in text and "repetition" in text
