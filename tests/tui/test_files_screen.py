"""Files screen against a real daemon: files with stats, paged row browser, validation against a file, jumps."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon_proc import DaemonProcess
from tests.support.jobs import arithmetic_rows, write_jsonl
from tests.tui.conftest import make_app, row_texts, screen_settled, until

BIG_ROWS = 20_000


@pytest.fixture(scope="module")
def files_daemon() -> Iterator[tuple[DaemonProcess, dict[str, str]]]:
    """One daemon for the module with: a big file, train/valid that overlap, and a file with bad lines."""
    home = Path(tempfile.mkdtemp(prefix="rft-f-"))
    d = DaemonProcess(home).start()
    data = home / "data"
    data.mkdir()
    train_rows = arithmetic_rows(10, 30)
    valid_rows = arithmetic_rows(35, 10)  # rows 35..39 also in train: overlap
    bad = data / "bad.jsonl"
    lines = [json.dumps(r) for r in arithmetic_rows(100, 8)]
    lines[3] = '{"messages": [{"role": "user", "content": "1+1="}], "answer": '  # line 4: broken JSON
    lines[6] = json.dumps({"answer": "3"})  # line 7: no messages
    bad.write_text("\n".join(lines) + "\n")
    big = data / "big.jsonl"
    with big.open("w") as f:
        for a in range(BIG_ROWS):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"{a}+1="}], "answer": str(a + 1)}) + "\n")
    with d.client() as c:
        ids = {
            "train": c.import_file(str(write_jsonl(data / "train.jsonl", train_rows))).id,
            "valid": c.import_file(str(write_jsonl(data / "valid.jsonl", valid_rows))).id,
            "bad": c.import_file(str(bad), force=True).id,
            "big": c.import_file(str(big)).id,
        }
    yield d, ids
    d.stop()
    shutil.rmtree(home, ignore_errors=True)


async def _files_screen(pilot: Any) -> Any:
    await pilot.press("F")
    screen = await until(pilot, lambda: pilot.app.screen if type(pilot.app.screen).__name__ == "FilesScreen" else None,
                         what="the Files screen")
    await until(pilot, lambda: screen.query_one("#files-list").row_count == 4, what="4 files listed")
    return screen


async def _select(pilot: Any, screen: Any, file_id: str) -> None:
    table = screen.query_one("#files-list")
    table.move_cursor(row=table.get_row_index(file_id))
    await until(pilot, lambda: screen.selected_id == file_id, what=f"{file_id} selected")


@pytest.mark.slow
async def test_lists_files_and_pages_rows_on_demand(files_daemon: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, ids = files_daemon
    app = make_app(d, stream=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _files_screen(pilot)
        listed = {r[3]: r for r in row_texts(screen.query_one("#files-list"))}
        assert listed[ids["big"]][0] == "big.jsonl" and listed[ids["big"]][1] == str(BIG_ROWS)
        assert listed[ids["train"]][1] == "30"
        await _select(pilot, screen, ids["big"])
        view = screen.rows_view
        await until(pilot, lambda: view.row_at(0) is not None, what="the first page of rows")
        assert view.row_at(0).line == 1 and view.row_at(0).data["answer"] == "1"
        assert str(BIG_ROWS) in str(screen.query_one("#file-info").render())
        view.focus()
        await pilot.press("end")
        await until(pilot, lambda: view.selected_row is not None, what="the last page")
        assert view.selected_row.line == BIG_ROWS and view.selected_row.data["answer"] == str(BIG_ROWS)
        # only the windows around the first and the last rows were fetched, never the whole file
        assert len(view.pages) <= 4 and sum(len(p) for p in view.pages.values()) <= 4 * view.page_size
        await pilot.press("home", "down", "down")
        await until(pilot, lambda: view.selected_row is not None and view.selected_row.line == 3, what="row 3")
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "TextModal", what="the row in full")
        assert '"answer": "3"' in str(app.screen.query_one("#text-body").render())


@pytest.mark.slow
async def test_validate_against_shows_overlap_and_jumps_to_line(
        files_daemon: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, ids = files_daemon
    app = make_app(d, stream=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _files_screen(pilot)
        await _select(pilot, screen, ids["train"])
        await pilot.press("a")
        await until(pilot, lambda: type(app.screen).__name__ == "FilePickerScreen", what="the file picker")
        picker = app.screen.query_one("#picker-options")
        picker.highlighted = [o.id for o in picker._options].index(ids["valid"])
        await pilot.press("enter")
        problems = screen.query_one("#file-problems")
        await until(pilot, lambda: problems.row_count > 0, what="overlap problems")
        info = str(screen.query_one("#file-info").render())
        assert "5 exact" in info
        refs = problems.refs
        overlap_rows = [i for i, r in enumerate(refs) if r.file_id == ids["valid"]]
        assert overlap_rows, "the overlapping validation rows are listed"
        target = refs[overlap_rows[-1]]
        problems.focus()
        problems.move_cursor(row=overlap_rows[-1])
        await pilot.press("enter")
        view = screen.rows_view
        await until(pilot, lambda: screen.selected_id == ids["valid"] and view.selected_row is not None
                    and view.selected_row.line == target.line, what=f"the row browser at line {target.line}")


async def test_bad_lines_are_listed_with_line_numbers_and_enter_jumps(
        files_daemon: tuple[DaemonProcess, dict[str, str]]) -> None:
    d, ids = files_daemon
    app = make_app(d, stream=False)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await _files_screen(pilot)
        await _select(pilot, screen, ids["bad"])
        await pilot.press("v")
        problems = screen.query_one("#file-problems")
        await until(pilot, lambda: problems.row_count >= 2, what="the bad file's problems")
        lines = [r.line for r in problems.refs]
        assert 4 in lines and 7 in lines
        problems.focus()
        problems.move_cursor(row=lines.index(7))
        await pilot.press("enter")
        view = screen.rows_view
        await until(pilot, lambda: view.selected_row is not None and view.selected_row.line == 7, what="line 7")
        assert view.has_focus


def test_files_screen_snapshot(files_daemon: tuple[DaemonProcess, dict[str, str]], snap_compare: Any) -> None:
    d, ids = files_daemon

    async def ready(pilot: Any) -> None:
        screen = await _files_screen(pilot)
        await _select(pilot, screen, ids["bad"])
        await pilot.press("v")
        await until(pilot, lambda: screen.query_one("#file-problems").row_count >= 2, what="problems")
        await until(pilot, lambda: screen.rows_view.row_at(7) is not None, what="rows")
        await until(pilot, lambda: any("Problems" in str(k.render()) for k in pilot.app.screen.query("FooterKey")),
                    what="the footer to offer Problems")
        await screen_settled(pilot)

    assert snap_compare(make_app(d, stream=False), terminal_size=(100, 30), run_before=ready)


async def test_at_80x24_the_rows_get_the_room(files_daemon: tuple[DaemonProcess, dict[str, str]]) -> None:
    """SSH-sized terminal: the file list on top, rows full width below (it showed 2 rows beside the list)."""
    d, ids = files_daemon
    app = make_app(d, stream=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _files_screen(pilot)
        assert screen.has_class("-narrow") and screen.has_class("-short")
        await _select(pilot, screen, ids["train"])
        await until(pilot, lambda: screen.report is not None, what="the clean file validated")
        await until(pilot, lambda: screen.rows_view.row_at(9) is not None, what="rows")
        await pilot.pause()
        rows = screen.rows_view
        assert rows.size.width >= 76 and rows.size.height >= 10  # a clean file: no problems pane
        assert not screen.query_one("#file-problems").display
        await _select(pilot, screen, ids["bad"])
        await until(pilot, lambda: screen.query_one("#file-problems").row_count >= 2, what="problems")
        await pilot.pause()
        assert screen.query_one("#file-problems").display and rows.size.height >= 4


@pytest.mark.slow
def test_files_screen_at_80x24(files_daemon: tuple[DaemonProcess, dict[str, str]], snap_compare: Any) -> None:
    d, ids = files_daemon

    async def ready(pilot: Any) -> None:
        screen = await _files_screen(pilot)
        await _select(pilot, screen, ids["bad"])
        await until(pilot, lambda: screen.query_one("#file-problems").row_count >= 2, what="problems")
        await until(pilot, lambda: screen.rows_view.row_at(3) is not None, what="rows")
        await until(pilot, lambda: any("Problems" in str(k.render()) for k in pilot.app.screen.query("FooterKey")),
                    what="the footer to offer Problems")
        await screen_settled(pilot)

    assert snap_compare(make_app(d, stream=False), terminal_size=(80, 24), run_before=ready)
