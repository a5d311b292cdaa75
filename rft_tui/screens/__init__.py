"""The TUI's screens. Each module holds one screen; import them lazily (the app does)."""

from rft_tui.screens.base import RftScreen

__all__ = ["RftScreen"]
