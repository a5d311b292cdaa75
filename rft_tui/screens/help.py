"""`f1`/`?`: the keys of the screen you were on, built from its active bindings (nothing hard-coded)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Label


class HelpScreen(ModalScreen[None]):
    """A table of key, action and what it does; `escape`, `q`, `f1` or `?` close it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 90%; max-width: 96; height: 90%; border: thick $accent; background: $surface; }
    HelpScreen #help-title { padding: 0 1; text-style: bold; width: 100%; }
    HelpScreen DataTable { height: 1fr; }
    """
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close", id="help.close", tooltip="Close help")]

    def __init__(self, title: str, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.help_title = title
        self.rows = rows

    @classmethod
    def for_screen(cls, screen: Screen) -> "HelpScreen":
        """Collect the bindings active on `screen` (focused widget first, then screen, then app)."""
        first: list[tuple[str, str, str]] = []
        widget: list[tuple[str, str, str]] = []
        for active in screen.active_bindings.values():
            binding: Binding = active.binding
            if not active.enabled:
                continue
            display = binding.key_display or screen.app.get_key_display(binding)
            row = (display, binding.description or binding.action, active.tooltip or binding.tooltip)
            (first if active.node is screen or active.node is screen.app else widget).append(row)
        rows = first + widget
        title = getattr(screen, "HELP_TITLE", None) or screen.__class__.__name__.removesuffix("Screen")
        return cls(f"Keys — {title}", rows)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.help_title, id="help-title")
            table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True)
            table.add_columns("Key", "Action", "What it does")
            for row in self.rows:
                table.add_row(*row)
            yield table

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
