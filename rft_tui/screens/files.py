"""Files: imported datasets with stats, a paged row browser, validation (optionally against another file)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Static

from daemon import api
from rft_tui.messages import DaemonEvent, FileRowsFailed, FileRowsLoaded, FilesLoaded, FileValidated
from rft_tui.screens.base import RftScreen
from rft_tui.widgets.file_info import file_text, human_bytes, report_text
from rft_tui.widgets.file_picker import FilePickerScreen
from rft_tui.widgets.file_problems import FileProblemsTable
from rft_tui.widgets.file_rows import FileRowsView, row_summary

#: Files up to this many rows are validated (stats, problems) as soon as they are selected; bigger ones on `v`.
AUTO_VALIDATE_MAX_ROWS = 50_000


class FilesScreen(RftScreen):
    """Pick a file on the left; its stats, validation problems and rows on the right."""

    HELP_TITLE = "Files"
    CSS_PATH = "files.tcss"
    AUTO_FOCUS = "#files-list"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]
    BINDINGS = [
        Binding("v", "validate", "Validate", id="files.validate", tooltip="Validate the selected file"),
        Binding("a", "validate_against", "Validate against…", id="files.against",
                tooltip="Validate the selected file as training data against a validation file (overlap too)"),
        Binding("b", "browse", "Rows", id="files.rows", tooltip="Move to the row browser"),
        Binding("p", "problems", "Problems", id="files.problems", tooltip="Move to the problems list"),
        Binding("r", "reload", "Reload", id="files.reload", show=False, tooltip="Fetch the files list again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, api.FileObject] = {}
        self.selected_id: str | None = None
        self.report: FileValidated | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="files-body"):
            files_table: DataTable[str] = DataTable(id="files-list", cursor_type="row", zebra_stripes=True)
            files_table.border_title = "Files"
            yield files_table
            with Vertical(id="files-right"):
                yield Static(file_text(None), id="file-info")
                problems = FileProblemsTable(id="file-problems")
                problems.border_title = "Problems"
                yield problems
                rows = FileRowsView(id="file-rows")
                rows.border_title = "Rows"
                yield rows
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#files-list", DataTable).add_columns("file", "rows", "size", "id")
        self.load_files()

    @property
    def rows_view(self) -> FileRowsView:
        return self.query_one(FileRowsView)

    # ------------------------------------------------------------------ workers

    @work(exclusive=True, group="files-list", exit_on_error=False)
    async def load_files(self) -> None:
        page = await self.app.client.list_files(limit=1000)
        self.post_message(FilesLoaded(list(page.data)))

    def fetch_pages(self, file_id: str, pages: list[int], page_size: int) -> None:
        async def fetch() -> None:
            for page in pages:
                try:
                    rows = await self.app.client.file_rows(file_id, offset=page * page_size, limit=page_size)
                except Exception:
                    self.post_message(FileRowsFailed(file_id, page))
                    raise
                self.post_message(FileRowsLoaded(file_id, page, rows))

        self.run_worker(fetch(), name="file rows", group=f"rows:{file_id}:{pages[0]}", exit_on_error=False)

    @work(exclusive=True, group="files-validate", exit_on_error=False)
    async def validate(self, file_id: str, against: str | None) -> None:
        report = await self.app.client.validate_file(
            api.FileValidateRequest(file_id=file_id, against=against, max_problems=1000))
        self.post_message(FileValidated(file_id, against, report))

    # ------------------------------------------------------------------ handlers

    @on(FilesLoaded)
    def _files_loaded(self, message: FilesLoaded) -> None:
        self.files = {f.id: f for f in message.files}
        table = self.query_one("#files-list", DataTable)
        table.clear()
        for f in message.files:
            table.add_row(f.filename, str(f.rows if f.rows is not None else "?"), human_bytes(f.bytes), f.id,
                          key=f.id)
        if self.selected_id not in self.files:
            self._select(message.files[0].id if message.files else None)
        self.refresh_bindings()

    @on(DataTable.RowHighlighted, "#files-list")
    def _file_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value and event.row_key.value != self.selected_id:
            self._select(event.row_key.value)

    @on(DataTable.RowSelected, "#files-list")
    def _file_chosen(self) -> None:
        self.rows_view.focus()

    @on(FileRowsView.PagesWanted)
    def _pages_wanted(self, message: FileRowsView.PagesWanted) -> None:
        self.fetch_pages(message.file_id, message.pages, message.view.page_size)

    @on(FileRowsLoaded)
    def _rows_loaded(self, message: FileRowsLoaded) -> None:
        self.rows_view.add_page(message.file_id, message.page, list(message.rows.data), message.rows.total_rows)

    @on(FileRowsFailed)
    def _rows_failed(self, message: FileRowsFailed) -> None:
        self.rows_view.page_failed(message.file_id, message.page)

    @on(FileRowsView.RowChosen)
    def _row_chosen(self, message: FileRowsView.RowChosen) -> None:
        import json

        from rft_tui.screens.text_modal import TextModal

        row = message.row
        body = row.raw or "" if row.data is None else json.dumps(row.data, indent=2, ensure_ascii=False)
        if row.error:
            body = f"{row.error}\n\n{body}"
        self.app.push_screen(TextModal(f"line {row.line}", Text(body or row_summary(row))))

    @on(FileValidated)
    def _validated(self, message: FileValidated) -> None:
        if message.file_id != self.selected_id and (self.report is None or self.report.file_id != message.file_id):
            return  # answer for a file the user has moved away from
        self.report = message
        labels = {fid: f.filename for fid, f in self.files.items()}
        problems = self.query_one(FileProblemsTable)
        problems.show(message.report, message.file_id, message.against, labels)
        self.set_class(problems.row_count == 0, "-clean")  # a short terminal gives a clean file's rows the room
        self._show_info()
        self.refresh_bindings()
        if message.file_id == self.selected_id:
            self.query_one(FileProblemsTable).border_subtitle = (
                f"{message.report.errors} errors, {message.report.warnings} warnings")

    @on(FileProblemsTable.JumpToLine)
    def _jump(self, message: FileProblemsTable.JumpToLine) -> None:
        ref = message.ref
        if ref.file_id != self.selected_id:
            self._select(ref.file_id, keep_report=True)
        self.rows_view.goto_line(ref.line or 1)
        self.rows_view.focus()

    @on(DaemonEvent)
    def _daemon_event(self, message: DaemonEvent) -> None:
        if message.event.type is api.StreamEventType.file_created:
            self.load_files()

    def _select(self, file_id: str | None, keep_report: bool = False) -> None:
        self.selected_id = file_id
        if not keep_report:
            self.report = None
            self.query_one(FileProblemsTable).clear()
            self.query_one(FileProblemsTable).border_subtitle = ""
            self.set_class(True, "-clean")
        f = self.files.get(file_id) if file_id else None
        self.rows_view.show_file(file_id, (f.rows or 0) if f else 0)
        self.rows_view.border_title = f"Rows of {f.filename}" if f else "Rows"
        self._show_info()
        self.refresh_bindings()
        if f is not None and not keep_report and (f.rows or 0) <= AUTO_VALIDATE_MAX_ROWS:
            self.validate(f.id, None)

    def _show_info(self) -> None:
        f = self.files.get(self.selected_id) if self.selected_id else None
        info = file_text(f)
        if self.report is not None:
            info.append("\n")
            against = self.files.get(self.report.against) if self.report.against else None
            info.append_text(report_text(self.report.report, against))
        else:
            info.append("\npress v to validate, a to validate against a validation file", style="dim")
        self.query_one("#file-info", Static).update(info)

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("validate", "validate_against", "browse"):
            return self.selected_id is not None
        if action == "problems":
            return self.report is not None
        return True

    def action_validate(self) -> None:
        if self.selected_id:
            self.validate(self.selected_id, None)

    def action_validate_against(self) -> None:
        file_id = self.selected_id
        if not file_id:
            return

        def chosen(against: str | None) -> None:
            if against:
                self.validate(file_id, against)

        self.app.push_screen(FilePickerScreen(f"Validate {self.files[file_id].filename} against which file?",
                                              list(self.files.values()), exclude=file_id), chosen)

    def action_browse(self) -> None:
        self.rows_view.focus()

    def action_problems(self) -> None:
        self.query_one(FileProblemsTable).focus()

    def action_reload(self) -> None:
        self.load_files()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Reload files", "Fetch the files list again", self.action_reload)
        if self.selected_id:
            yield SystemCommand("Validate file", "Validate the selected file", self.action_validate)
            yield SystemCommand("Validate against…", "Validate with a validation file", self.action_validate_against)

