"""The one text-clipping helper that the daemon, the CLI and the TUI share."""

from __future__ import annotations

from daemon.text import clip


def test_clip_keeps_short_text_and_marks_a_cut() -> None:
    assert clip("short", 5) == "short"
    assert clip("longer text", 6) == "longe…" and len(clip("longer text", 6)) == 6
    assert clip(None, 3) == "" and clip("abc", 0) == ""


def test_one_line_shows_newlines_so_a_table_row_stays_one_row() -> None:
    assert clip("a\nb", 20, one_line=True) == "a ⏎ b"
    assert clip("a\r\nb\nc", 6, one_line=True) == "a ⏎ b…"
    assert clip("a\nb", 20) == "a\nb"  # the wire text (an overlap pair's prompt) keeps its lines
