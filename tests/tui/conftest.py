"""TUI fixtures: a real daemon over a recorded store (fixed ids and times), the app on a pinned clock."""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import api
from tests.support.daemon_proc import DaemonProcess, kill_job_workers, wait_until
from tests.tui import recorded


@pytest.fixture
def recorded_daemon(rft_home: Path, daemon_factory: Callable[..., DaemonProcess]) -> DaemonProcess:
    """Jobs in every state (one kept running by an idle worker), then a real daemon on that store."""
    recorded.record(rft_home)
    d = daemon_factory(env=recorded.IDLE_WORKER_ENV)
    with d.client() as c:
        wait_until(lambda: c.get_job(recorded.RUNNING).status is api.JobStatus.running, 30,
                   what="the recorded running job to run again")
    return d


@pytest.fixture(scope="module")
def shared_recorded_daemon() -> Iterator[DaemonProcess]:
    """The recorded store and daemon shared by a module's read-only tests (saves a daemon start each)."""
    home = Path(tempfile.mkdtemp(prefix="rft-"))
    recorded.record(home)
    d = DaemonProcess(home, env={"RFT_DEVICE": "cpu", **recorded.IDLE_WORKER_ENV}).start()
    try:
        with d.client() as c:
            wait_until(lambda: c.get_job(recorded.RUNNING).status is api.JobStatus.running, 30,
                       what="the recorded running job to run again")
        yield d
    finally:
        d.stop()
        kill_job_workers(d.paths)
        shutil.rmtree(home, ignore_errors=True)


def make_app(daemon: DaemonProcess, **kw: Any) -> Any:
    from rft_tui.app import RftApp

    kw.setdefault("clock", lambda: float(recorded.CLOCK))
    return RftApp(daemon.async_client(), **kw)


async def until(pilot: Any, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Let the app run until `predicate()` holds (polling with a deadline; never a blind sleep)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - widgets may not be mounted yet
            last = e
        await pilot.pause(0.02)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last!r})" if last else ""))


async def type_text(pilot: Any, text: str) -> None:
    """Type `text` into the focused widget as one burst of key events, as a terminal delivers a fast typist's
    keys, then wait until the app has handled them all. `pilot.press(*text)` waits for the app to go idle after
    every key (~0.1 s each: a 70-character path took 7 s); this waits once. Only for plain text into a widget
    that already has focus: a key that moves focus would race the keys behind it."""
    from textual import events
    from textual._wait import wait_for_idle
    from textual.keys import _character_to_key

    app = pilot.app
    focused = app.focused
    assert focused is not None, "type_text needs a focused widget"
    for char in text:
        key = char if char.isalnum() else _character_to_key(char)
        event = events.Key(key, char)
        event.set_sender(app)
        app._driver.send_message(event)
    await wait_for_idle(0)
    await app.animator.wait_until_complete()
    await wait_for_idle(0)
    assert app.focused is focused, f"focus moved from {focused!r} to {app.focused!r} while typing {text!r}"


def row_texts(table: Any) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def static_text(widget: Any, width: int = 200) -> str:
    """What a Static shows, as plain text (Rich renderables rendered at `width`)."""
    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.export_text()


def footer_actions(app: Any) -> set[str]:
    """Actions a user can trigger now (what the footer and help show)."""
    return {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}


def table_settled(table: Any) -> bool:
    """A DataTable draws what its cells hold: every column is measured at least as wide as its label and widest
    cell, and its virtual size (hence its scrollbars) follows the columns.

    A DataTable measures new rows and changed cells only when it next goes idle (`_on_idle`), so right after
    `add_row`/`update_cell` its row count is already final while its columns are still drawn at their old,
    narrower widths -- what a screenshot taken then shows (squeezed columns, no horizontal scrollbar). The
    measurement below is the table's own (`default_cell_formatter` + `measure`).
    """
    from textual.render import measure
    from textual.widgets._data_table import default_cell_formatter

    console = table.app.console
    for key, column in table.columns.items():
        if not column.auto_width:
            continue
        cells = [measure(console, default_cell_formatter(c, wrap=False, height=1), 1) for c in table.get_column(key)]
        if column.content_width < max([column.label.cell_len, *cells]):
            return False
    return table.virtual_size.width >= sum(c.get_render_width(table) for c in table.columns.values())


async def screen_settled(pilot: Any, timeout: float = 15.0) -> None:
    """Wait until every DataTable on the screen is settled (`table_settled`) and the screen has processed
    what that asked for (a layout refresh), twice in a row: a screenshot then shows the final layout."""
    from textual.widgets import DataTable

    def all_settled() -> bool:
        return all(table_settled(t) for t in pilot.app.screen.query(DataTable))

    await until(pilot, all_settled, timeout, what="the screen's tables to be measured")
    await pilot.pause()  # the layout refresh the measurement requested
    await until(pilot, all_settled, timeout, what="the screen's tables to stay measured")
