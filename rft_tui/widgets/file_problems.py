"""The problems of a validation report, one row each with its file and line; `enter` jumps to the line."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from daemon import api


@dataclass(frozen=True)
class ProblemRef:
    """Where a problem lies: which file (id) and line (None for whole-file problems)."""

    file_id: str
    line: int | None


class FileProblemsTable(DataTable[Text]):
    """Problems of the validated file and of its `against` file, overlap pairs last."""

    BINDINGS = [Binding("enter", "jump", "Go to line", id="problems.jump",
                        tooltip="Show the problem's line in the row browser")]

    @dataclass
    class JumpToLine(Message):
        """Show `ref.line` of `ref.file_id` in the row browser."""

        ref: ProblemRef

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.refs: list[ProblemRef] = []

    def on_mount(self) -> None:
        self.add_columns("sev", "file", "line", "field", "problem")

    def show(self, report: api.ValidationReport, file_id: str, against_id: str | None,
             labels: dict[str, str]) -> None:
        self.clear()
        self.refs = []
        rows: list[tuple[str, api.Problem]] = [(file_id, p) for p in report.problems]
        if report.against is not None and against_id:
            rows += [(against_id, p) for p in report.against.problems]
        for fid, p in rows:
            self._add(ProblemRef(fid, p.line), p.severity, labels.get(fid, p.file), p.field or "",
                      f"{p.code}: {p.message}")
        if report.overlap is not None and against_id:
            for pair in report.overlap.exact_pairs + report.overlap.near_pairs:
                kind = "exact" if pair.similarity >= 1.0 else f"near {pair.similarity:.2f}"
                self._add(ProblemRef(against_id, pair.valid_line), "warning", labels.get(against_id, against_id),
                          "messages", f"overlap ({kind}) with training line {pair.train_line}"
                          + (f": {pair.prompt}" if pair.prompt else ""))

    def _add(self, ref: ProblemRef, severity: str, file: str, field: str, message: str) -> None:
        style = "red" if severity == "error" else "yellow"
        self.refs.append(ref)
        self.add_row(Text(severity, style=style), Text(file), Text("" if ref.line is None else str(ref.line)),
                     Text(field), Text(message), key=str(len(self.refs) - 1))

    def action_jump(self) -> None:
        if 0 <= self.cursor_row < len(self.refs):
            ref = self.refs[self.cursor_row]
            if ref.line is not None:
                self.post_message(self.JumpToLine(ref))
