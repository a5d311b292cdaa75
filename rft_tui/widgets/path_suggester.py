"""Completes a typed path (→ or End accepts), offering folders and files with the wanted suffixes.

The directory listing runs in a thread from Textual's suggestion worker, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from textual.suggester import Suggester


def complete_path(value: str, suffixes: tuple[str, ...]) -> str | None:
    """`value` extended to the first matching folder (with a trailing /) or file, as the user typed it."""
    if not value:
        return None
    typed_dir, _, prefix = value.rpartition("/")
    base = Path(os.path.expanduser(typed_dir or ".")) if typed_dir or not value.startswith("/") else Path("/")
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except (OSError, RuntimeError):
        return None
    for entry in entries:
        if not entry.name.startswith(prefix) or entry.name.startswith(".") and not prefix.startswith("."):
            continue
        is_dir = entry.is_dir()
        if is_dir or entry.name.endswith(suffixes):
            head = f"{typed_dir}/" if typed_dir or value.startswith("/") else ""
            return head + entry.name + ("/" if is_dir else "")
    return None


class PathSuggester(Suggester):
    """Path completion for an Input (not cached: the file system changes)."""

    def __init__(self, suffixes: tuple[str, ...]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.suffixes = suffixes

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(complete_path, value, self.suffixes)
