"""The Graders screen's right pane: run the open grader over a whole file, and pre-flight it on a model.

It only lays out inputs and shows results; the screen's workers do the fetching.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from daemon import api
from rft_tui.widgets.file_picker import file_label

DEFAULT_MODEL = "builtin:tiny-arith"
DEFAULT_LIMIT = 1000


@dataclass(frozen=True)
class PlaygroundRun:
    """What to grade: a file, the column whose text stands in for the model's output, how many rows."""

    file_id: str
    field: str | None
    limit: int


class GraderPlayground(VerticalScroll):
    """File, column and row count; the run's distribution, errors and lowest rows; pre-flight below."""

    def compose(self) -> ComposeResult:
        yield Label("Playground: grade a file", classes="section-title")
        yield Select[str]([], prompt="file to grade", id="pg-file", compact=True)
        with Horizontal(classes="row"):
            yield Label("column", classes="field-label")
            yield Input(placeholder="auto: answer, reference_answer…", id="pg-field", compact=True)
        with Horizontal(classes="row"):
            yield Label("rows", classes="field-label")
            yield Input(str(DEFAULT_LIMIT), id="pg-limit", type="integer", compact=True)
        yield Button("Run on file (ctrl+r)", id="pg-run", compact=True)
        yield Static(Text("Grades each row's column as if the model had answered it: reference answers "
                          "should score ~1.0.", style="dim"), id="pg-result")
        yield Label("Pre-flight", classes="section-title")
        yield Input(DEFAULT_MODEL, id="pf-model", placeholder="model", compact=True)
        yield Button("Pre-flight (ctrl+f)", id="pf-run", compact=True)
        yield Static("", id="pf-result")

    def show_files(self, files: list[api.FileObject]) -> None:
        select = self.query_one("#pg-file", Select)
        keep = select.value
        select.set_options([(file_label(f), f.id) for f in files])
        ids = [f.id for f in files]
        if isinstance(keep, str) and keep in ids:
            select.value = keep
        elif ids:
            select.value = ids[0]

    @property
    def file_id(self) -> str | None:
        value = self.query_one("#pg-file", Select).value
        return value if isinstance(value, str) else None

    def run_request(self) -> PlaygroundRun | str:
        """The run the inputs describe, or what is missing (to tell the user)."""
        if self.file_id is None:
            return "Choose a file to grade (import one with rft-tui files add)"
        try:
            limit = int(self.query_one("#pg-limit", Input).value or DEFAULT_LIMIT)
        except ValueError:
            return "rows: a whole number"
        field = self.query_one("#pg-field", Input).value.strip() or None
        return PlaygroundRun(self.file_id, field, max(1, limit))

    @property
    def model(self) -> str:
        return self.query_one("#pf-model", Input).value.strip() or DEFAULT_MODEL

    def show_result(self, text: Text | str) -> None:
        self.query_one("#pg-result", Static).update(text)

    def show_preflight(self, text: Text | str) -> None:
        self.query_one("#pf-result", Static).update(text)
