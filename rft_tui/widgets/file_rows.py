"""A virtual table over a file's rows: only the visible window (± a page) is ever fetched, pages kept in an LRU.

The widget does no I/O: it posts `PagesWanted` for the pages it lacks; the screen's worker fetches them
and hands them back with `add_page`. A million-row file scrolls at the cost of a few pages.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from daemon import api

PAGE_SIZE = 100
MAX_CACHED_PAGES = 24
LINE_COL = 8


def row_summary(row: api.FileRow) -> str:
    """One line for a row: its error, else its compact JSON."""
    if row.error:
        return f"! {row.error}  {row.raw or ''}"
    return json.dumps(row.data, ensure_ascii=False, separators=(",", ":")) if row.data is not None else (row.raw or "")


class FileRowsView(ScrollView, can_focus=True):
    """Rows of one file by index; `cursor` is the selected row index (0-based)."""

    COMPONENT_CLASSES = {"file-rows--cursor", "file-rows--error", "file-rows--line", "file-rows--loading"}
    DEFAULT_CSS = """
    FileRowsView { height: 1fr; }
    FileRowsView > .file-rows--cursor { background: $accent 40%; }
    FileRowsView:focus > .file-rows--cursor { background: $accent; color: $text; }
    FileRowsView > .file-rows--error { color: $error; }
    FileRowsView > .file-rows--line { color: $text-muted; }
    FileRowsView > .file-rows--loading { color: $text-muted; }
    """
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False, id="rows.up", tooltip="Previous row"),
        Binding("down,j", "move(1)", "Down", show=False, id="rows.down", tooltip="Next row"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="rows.pageup", tooltip="One screen up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="rows.pagedown", tooltip="One screen down"),
        Binding("home", "jump(0)", "First", show=False, id="rows.home", tooltip="First row"),
        Binding("end", "jump(-1)", "Last", show=False, id="rows.end", tooltip="Last row"),
        Binding("enter", "open_row", "Show row", id="rows.open", tooltip="Show the selected row in full"),
    ]

    cursor: reactive[int] = reactive(0, init=False)

    @dataclass
    class PagesWanted(Message):
        """The view needs these pages (index // PAGE_SIZE) of `file_id`."""

        view: FileRowsView
        file_id: str
        pages: list[int]

    @dataclass
    class RowChosen(Message):
        """The user asked to see one row in full."""

        row: api.FileRow

    def __init__(self, *, page_size: int = PAGE_SIZE, max_pages: int = MAX_CACHED_PAGES, id: str | None = None) -> None:
        super().__init__(id=id)
        self.page_size = page_size
        self.max_pages = max_pages
        self.file_id: str | None = None
        self.total_rows = 0
        self.pages: OrderedDict[int, list[api.FileRow]] = OrderedDict()
        self.pending: set[int] = set()
        self._target_line: int | None = None

    # ------------------------------------------------------------------ data in

    def show_file(self, file_id: str | None, total_rows: int) -> None:
        """Browse another file (or none); drops every cached page."""
        self.file_id = file_id
        self.total_rows = total_rows if file_id else 0
        self.pages.clear()
        self.pending.clear()
        self._target_line = None
        self.virtual_size = Size(self.size.width, self.total_rows)
        self.set_reactive(FileRowsView.cursor, 0)
        self.scroll_to(0, 0, animate=False)
        self.refresh()
        self._request_window()

    def add_page(self, file_id: str, page: int, rows: list[api.FileRow], total_rows: int | None = None) -> None:
        """A fetched page; stale answers (another file by now) are ignored."""
        if file_id != self.file_id:
            return
        self.pending.discard(page)
        if total_rows is not None and total_rows != self.total_rows:
            self.total_rows = total_rows
            self.virtual_size = Size(self.size.width, total_rows)
        self.pages[page] = rows
        self.pages.move_to_end(page)
        while len(self.pages) > self.max_pages:
            self.pages.popitem(last=False)
        self._settle_target_line()
        self.refresh()

    def page_failed(self, file_id: str, page: int) -> None:
        if file_id == self.file_id:
            self.pending.discard(page)

    def row_at(self, index: int) -> api.FileRow | None:
        rows = self.pages.get(index // self.page_size)
        offset = index % self.page_size
        return rows[offset] if rows is not None and offset < len(rows) else None

    @property
    def selected_row(self) -> api.FileRow | None:
        return self.row_at(self.cursor)

    # ------------------------------------------------------------------ navigation

    def goto_line(self, line: int) -> None:
        """Select the row at file line `line` (1-based; blank lines are not rows, so settle once loaded)."""
        if not self.total_rows:
            return
        self._target_line = line
        self.cursor = max(0, min(line - 1, self.total_rows - 1))
        self._settle_target_line()

    def _settle_target_line(self) -> None:
        target = self._target_line
        if target is None:
            return
        for _ in range(4):
            row = self.row_at(self.cursor)
            if row is None:
                return  # wait for the page
            if row.line == target or row.line < target:
                self._target_line = None
                return
            exact = next((i for i, r in self._loaded() if r.line == target), None)
            new = exact if exact is not None else max(0, self.cursor - (row.line - target))
            if new == self.cursor:
                self._target_line = None
                return
            self.cursor = new
        self._target_line = None

    def _loaded(self) -> list[tuple[int, api.FileRow]]:
        return [(p * self.page_size + i, r) for p, rows in self.pages.items() for i, r in enumerate(rows)]

    def action_move(self, delta: int) -> None:
        self.cursor = max(0, min(self.total_rows - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        self.action_move(direction * max(1, self.scrollable_content_region.height - 1))

    def action_jump(self, where: int) -> None:
        self.cursor = max(0, self.total_rows - 1) if where < 0 else 0

    def action_open_row(self) -> None:
        row = self.selected_row
        if row is not None:
            self.post_message(self.RowChosen(row))

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, max(0, self.total_rows - 1)))

    def watch_cursor(self, old: int, new: int) -> None:
        height = max(1, self.scrollable_content_region.height)
        top = round(self.scroll_y)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + height:
            self.scroll_to(y=new - height + 1, animate=False)
        self.refresh()
        self._request_window()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._request_window()

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.total_rows)
        self._request_window()

    def on_click(self, event: object) -> None:
        y = getattr(event, "y", None)
        if isinstance(y, int):
            self.cursor = round(self.scroll_y) + y

    def _request_window(self) -> None:
        """Ask for the pages under the viewport and one page either side (never the whole file)."""
        if not self.file_id or not self.total_rows:
            return
        height = max(1, self.scrollable_content_region.height or self.size.height or 20)
        top = round(self.scroll_y)
        first = max(0, top - self.page_size) // self.page_size
        last = min(self.total_rows - 1, top + height + self.page_size) // self.page_size
        wanted = [p for p in range(first, last + 1) if p not in self.pages and p not in self.pending]
        for p in range(first, last + 1):
            if p in self.pages:
                self.pages.move_to_end(p)
        if wanted:
            self.pending.update(wanted)
            self.post_message(self.PagesWanted(self, self.file_id, wanted))

    # ------------------------------------------------------------------ drawing

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        if index >= self.total_rows:
            return Strip.blank(width, self.rich_style)
        base = self.rich_style
        row = self.row_at(index)
        line_style = self.get_component_rich_style("file-rows--line")
        if row is None:
            segments = [Segment(f"{'…':>{LINE_COL - 1}} ", base + line_style),
                        Segment("loading…", base + self.get_component_rich_style("file-rows--loading"))]
        else:
            body_style = base + (self.get_component_rich_style("file-rows--error") if row.error else Style())
            segments = [Segment(f"{row.line:>{LINE_COL - 1}} ", base + line_style),
                        Segment(row_summary(row), body_style)]
        strip = Strip(segments).crop(scroll_x, scroll_x + width).extend_cell_length(width, base)
        if index == self.cursor:
            strip = strip.apply_style(self.get_component_rich_style("file-rows--cursor"))
        return strip
