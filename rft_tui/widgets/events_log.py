"""A job's events (oldest first, appended as they come) and the tail of its worker log."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Log, RichLog

from daemon import api

LEVEL_STYLE = {"info": "", "warn": "yellow", "error": "bold red"}


class EventsLog(RichLog):
    """Writes only events it has not shown (ids are ordered)."""

    DEFAULT_CSS = "EventsLog { height: 1fr; border-bottom: solid $panel; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, wrap=True, markup=False, max_lines=2000)
        self.last_id = ""

    def add_events(self, events: Sequence[api.JobEvent]) -> int:
        new = sorted((e for e in events if e.id > self.last_id), key=lambda e: e.id)
        for e in new:
            stamp = time.strftime("%H:%M:%S", time.gmtime(e.created_at))
            self.write(Text.assemble((stamp + " ", "dim"), (f"{e.level:5} ", LEVEL_STYLE.get(e.level, "")),
                                     e.message))
        if new:
            self.last_id = new[-1].id
        return len(new)


class WorkerLog(Log):
    """The worker's log tail; rewritten only when the tail changed."""

    DEFAULT_CSS = "WorkerLog { height: 1fr; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=5000)
        self.shown: list[str] = []

    def show_tail(self, lines: Sequence[str]) -> None:
        lines = list(lines)
        if lines == self.shown:
            return
        overlap = _overlap(self.shown, lines)
        if overlap:
            self.write_lines(lines[overlap:])
        else:
            self.clear()
            self.write_lines(lines)
        self.shown = lines


def _overlap(old: list[str], new: list[str]) -> int:
    """How many leading lines of `new` are the trailing lines of `old` (so only the rest is appended)."""
    for n in range(min(len(old), len(new)), 0, -1):
        if old[-n:] == new[:n]:
            return n
    return 0
