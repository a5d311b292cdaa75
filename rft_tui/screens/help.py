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
    HelpScreen > Vertical { width: 90%; max-width: 96; height: 90%; border: thick $accent; background: $surface;
                            overflow: hidden hidden; }
    HelpScreen #help-title { dock: top; padding: 0 1; text-style: bold; width: 100%; }
    HelpScreen DataTable { height: 1fr; }
    """
    AUTO_FOCUS = "#help-keys"
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close", id="help.close", tooltip="Close help")]

    def __init__(self, title: str, rows: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.help_title = title
        self.rows = rows

    @classmethod
    def for_screen(cls, screen: Screen) -> HelpScreen:
        """Collect the bindings active on `screen` (focused widget first, then screen, then app)."""
        merged: dict[tuple[str, str], list[str]] = {}
        tips: dict[tuple[str, str], str] = {}
        widget_keys: set[tuple[str, str]] = set()
        ours: set[tuple[str, str]] = set()
        for active in screen.active_bindings.values():
            binding: Binding = active.binding
            if not active.enabled:
                continue
            what = (binding.action, binding.description or binding.action)
            display = binding.key_display or screen.app.get_key_display(binding)
            if display not in merged.setdefault(what, []):
                merged[what].append(display)
            tips[what] = tips.get(what) or active.tooltip or binding.tooltip
            if active.node is not screen and active.node is not screen.app:
                widget_keys.add(what)
            if binding.id:
                ours.add(what)
        # this screen's and the app's keys first, then the focused widget's, then Textual's own (tab, copy…)
        order = sorted(merged, key=lambda w: (w not in ours, w in widget_keys, w[0].endswith("help")))
        rows = [(", ".join(merged[w]), w[1], tips[w]) for w in order]
        title = getattr(screen, "HELP_TITLE", None) or screen.__class__.__name__.removesuffix("Screen")
        return cls(f"Keys — {title}", rows)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.help_title, id="help-title")
            table: DataTable[str] = DataTable(cursor_type="row", zebra_stripes=True, id="help-keys")
            table.add_columns("Key", "Action", "What it does")
            for row in self.rows:
                table.add_row(*row)
            yield table

    def on_mount(self) -> None:
        self.call_after_refresh(self.show_top)

    def show_top(self) -> None:
        """Help always opens at its first row, whatever focus or layout scrolled on the way in."""
        table = self.query_one("#help-keys", DataTable)
        table.move_cursor(row=0, column=0, animate=False, scroll=False)
        table.scroll_home(animate=False, immediate=True)
        self.query_one(Vertical).scroll_home(animate=False, immediate=True)

    @property
    def at_top(self) -> bool:
        """Whether the first key row is in view (what a user sees first, and what tests wait on)."""
        table = self.query_one("#help-keys", DataTable)
        return table.scroll_y == 0 and table.cursor_row == 0 and self.query_one(Vertical).scroll_y == 0

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
