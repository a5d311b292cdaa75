"""Shortening text to fit a table cell, a line or a message (standard library only, so the CLI and TUI
import it beside the API and client; `graders` keeps its own, being self-contained)."""

from __future__ import annotations

ELLIPSIS = "…"


def clip(text: str | None, width: int, *, one_line: bool = False) -> str:
    """`text` in at most `width` characters, ending in an ellipsis when cut.

    `one_line` first shows each newline as ` ⏎ `, so a multi-line prompt cannot break a table row.
    """
    text = text or ""
    if one_line:
        text = text.replace("\r\n", "\n").replace("\n", " ⏎ ")
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + ELLIPSIS if width > 0 else ""
