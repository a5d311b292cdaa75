"""Shortening text to fit a table cell, a line or a message, and a chat message's text (standard library only,
so the CLI, TUI, daemon and worker import it alike; `graders` keeps its own, being self-contained)."""

from __future__ import annotations

from typing import Any

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


def message_text(content: Any) -> str:
    """A chat message's text, whether content is a string or a list of typed parts (only the text parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)
