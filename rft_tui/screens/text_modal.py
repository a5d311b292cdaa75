"""Show a long text (a sample's prompt and completion, a validation row) in full; `escape` closes."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class TextModal(ModalScreen[None]):
    DEFAULT_CSS = """
    TextModal { align: center middle; }
    TextModal > VerticalScroll { width: 90%; height: 85%; border: thick $accent; background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,enter", "close", "Close", id="text.close", tooltip="Close this view")]

    def __init__(self, title: str, body: Text | str) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = self.title_text
            yield Static(self.body, id="text-body")

    def action_close(self) -> None:
        self.dismiss(None)


def sections(*parts: tuple[str, str | None]) -> Text:
    """`Title` in bold, then the text, for each part."""
    out = Text()
    for title, body in parts:
        if body is None:
            continue
        out.append(f"{title}\n", style="bold")
        out.append(f"{body}\n\n")
    return out
