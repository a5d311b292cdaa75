"""A modal list of imported files to choose one from (the `against` file of a validation, a playground file)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from daemon import api


def file_label(f: api.FileObject) -> str:
    rows = f"{f.rows} rows" if f.rows is not None else "? rows"
    return f"{f.filename} · {rows} · {f.id[:13]}"


class FilePickerScreen(ModalScreen[str | None]):
    """Pick one file; dismisses with its id, or None on escape."""

    DEFAULT_CSS = """
    FilePickerScreen { align: center middle; }
    FilePickerScreen > Vertical { width: 70; max-width: 90%; height: auto; max-height: 80%;
                                  border: thick $accent; background: $surface; padding: 0 1; }
    FilePickerScreen OptionList { height: auto; max-height: 20; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="picker.cancel", tooltip="Close without choosing")]

    def __init__(self, title: str, files: list[api.FileObject], exclude: str | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.files = [f for f in files if f.id != exclude]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            if self.files:
                yield OptionList(*[Option(file_label(f), id=f.id) for f in self.files], id="picker-options")
            else:
                yield Label("No other file is imported (rft-tui files add PATH).", classes="hint")

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
