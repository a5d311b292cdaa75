"""Graders: the grader files, an editor that validates on save and follows edits made on disk, a playground
that runs the grader on a row of a file, and a pre-flight check of the reward signal before training."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Footer, Header, Input, Label, OptionList, Select, Static, TextArea
from textual.widgets.option_list import Option

from daemon import api
from daemon.client import ApiRequestError
from rft_tui.messages import (DaemonEvent, FilesLoaded, GraderFileLoaded, GraderFilesLoaded, GraderRan,
                              GraderSaveRefused, PreflightDone)
from rft_tui.screens.base import RftScreen
from rft_tui.widgets.file_picker import file_label
from rft_tui.widgets.grader_results import preflight_text, run_text
from rft_tui.widgets.grader_text import NEW_GRADER_TEMPLATES, GraderTextError, grader_from_text, language_of

DEFAULT_MODEL = "builtin:tiny-arith"


class GradersScreen(RftScreen):
    """Left: grader files. Middle: the editor and its errors. Right: playground and pre-flight."""

    HELP_TITLE = "Graders"
    CSS_PATH = "graders.tcss"
    AUTO_FOCUS = "#graders-list"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="graders.save", priority=True,
                tooltip="Save the grader file (validated by the daemon; errors show under the editor)"),
        Binding("ctrl+r", "run_grader", "Run on row", id="graders.run", priority=True,
                tooltip="Run the grader on the chosen row and sample (playground)"),
        Binding("ctrl+f", "preflight", "Pre-flight", id="graders.preflight", priority=True,
                tooltip="Sample completions on the chosen file and show the reward spread"),
        Binding("ctrl+n", "new_grader", "New grader", id="graders.new", priority=True,
                tooltip="Create a grader file (name ending in .json, .yaml or .py)"),
        Binding("escape", "leave", "Back", id="graders.back",
                tooltip="Back to the previous screen (asks first when the editor has unsaved edits)"),
    ]

    @dataclass
    class ChangedOnDisk(Message):
        """The open grader file changed on disk (another editor); `grader` is its new state."""

        grader: api.GraderFile

    @dataclass
    class RowForPlayground(Message):
        """The playground's chosen row, fetched; run the grader on it."""

        item: dict[str, object]
        sample: str | None

    def __init__(self) -> None:
        super().__init__()
        self.graders: dict[str, api.GraderFile] = {}
        self.files: list[api.FileObject] = []
        self.name_open: str | None = None
        self.modified_at: float | None = None
        self.disk_text = ""
        self._asking_reload = False

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="graders-body"):
            with Vertical(id="graders-left"):
                listing = OptionList(id="graders-list")
                listing.border_title = "Grader files"
                yield listing
                yield Input(placeholder="new file name, e.g. mine.json", id="grader-new-name", classes="hidden")
            with Vertical(id="grader-main"):
                editor = TextArea.code_editor("", id="grader-editor", soft_wrap=False)
                editor.border_title = "No grader open"
                yield editor
                yield Static("", id="grader-errors")
            with VerticalScroll(id="playground"):
                yield Label("Playground", classes="section-title")
                yield Select[str]([], prompt="file for rows", id="pg-file", compact=True)
                with Horizontal(classes="row"):
                    yield Label("row #", classes="field-label")
                    yield Input("1", id="pg-row", type="integer", compact=True)
                yield Input(placeholder="sample (empty: the row's field)", id="pg-sample", compact=True)
                with Horizontal(classes="row"):
                    yield Label("field", classes="field-label")
                    yield Input("answer", id="pg-field", compact=True)
                yield Button("Run on row (ctrl+r)", id="pg-run", compact=True)
                yield Static("", id="pg-result")
                yield Label("Pre-flight", classes="section-title")
                yield Input(DEFAULT_MODEL, id="pf-model", placeholder="model", compact=True)
                yield Button("Pre-flight (ctrl+f)", id="pf-run", compact=True)
                yield Static("", id="pf-result")
        yield Footer()

    @property
    def editor(self) -> TextArea:
        return self.query_one("#grader-editor", TextArea)

    @property
    def dirty(self) -> bool:
        return self.name_open is not None and self.editor.text != self.disk_text

    def on_mount(self) -> None:
        self.load_graders()
        self.load_files()

    # ------------------------------------------------------------------ workers (fetch, post)

    @work(exclusive=True, group="graders-list", exit_on_error=False)
    async def load_graders(self) -> None:
        page = await self.app.client.list_grader_files()
        self.post_message(GraderFilesLoaded(list(page.data)))

    @work(exclusive=True, group="graders-files", exit_on_error=False)
    async def load_files(self) -> None:
        page = await self.app.client.list_files(limit=1000)
        self.post_message(FilesLoaded(list(page.data)))

    @work(exclusive=True, group="grader-open", exit_on_error=False)
    async def open_grader(self, name: str) -> None:
        self.post_message(GraderFileLoaded(await self.app.client.get_grader_file(name)))

    @work(exclusive=True, group="grader-disk", exit_on_error=False)
    async def check_disk(self, name: str) -> None:
        try:
            grader = await self.app.client.get_grader_file(name)
        except ApiRequestError as e:
            if e.status_code == 404:
                return
            raise
        self.post_message(self.ChangedOnDisk(grader))

    @work(exclusive=True, group="grader-save", exit_on_error=False)
    async def save(self, name: str, content: str, expected: float | None) -> None:
        try:
            saved = await self.app.client.save_grader_file(name, content, expected_modified_at=expected)
        except ApiRequestError as e:
            if e.status_code in (400, 409):
                self.post_message(GraderSaveRefused(name, str(e), conflict=e.status_code == 409))
                return
            raise
        self.post_message(GraderFileLoaded(saved, saved=True))

    @work(exclusive=True, group="grader-run", exit_on_error=False)
    async def run_on_row(self, grader: dict[str, object], file_id: str, row: int, sample: str | None,
                         field: str) -> None:
        page = await self.app.client.file_rows(file_id, offset=row - 1, limit=1)
        if not page.data or page.data[0].data is None:
            raise ValueError(f"row {row} of {file_id} is missing or not a JSON object")
        item = dict(page.data[0].data)
        if sample is None:
            if field not in item:
                raise ValueError(f"row {row} has no field {field!r}; type a sample instead")
            sample = str(item[field])
        result = await self.app.client.run_grader(grader, sample, item)
        self.post_message(GraderRan(result, sample))

    @work(exclusive=True, group="grader-preflight", exit_on_error=False)
    async def run_preflight(self, grader: dict[str, object], model: str, training_file: str) -> None:
        request = api.PreflightRequest(model=model, training_file=training_file,
                                       method=api.JobMethod(reinforcement=api.ReinforcementMethod(grader=grader)))
        self.post_message(PreflightDone(await self.app.client.preflight(request)))

    # ------------------------------------------------------------------ handlers (own state)

    @on(GraderFilesLoaded)
    def _graders_loaded(self, message: GraderFilesLoaded) -> None:
        self.graders = {g.name: g for g in message.graders}
        listing = self.query_one("#graders-list", OptionList)
        highlighted = self.name_open
        listing.clear_options()
        for g in message.graders:
            mark = Text("✓ ", style="green") if g.valid else Text("✗ ", style="red")
            listing.add_option(Option(mark + Text(g.name), id=g.name))
        if highlighted in self.graders:
            listing.highlighted = list(self.graders).index(highlighted)
        if not message.graders:
            self.query_one("#grader-errors", Static).update(
                Text("No grader files yet: press ctrl+n to create one.", style="dim"))
        elif self.name_open is None:
            self.open_grader(message.graders[0].name)

    @on(FilesLoaded)
    def _files_loaded(self, message: FilesLoaded) -> None:
        self.files = message.files
        select = self.query_one("#pg-file", Select)
        select.set_options([(file_label(f), f.id) for f in message.files])
        if message.files:
            select.value = message.files[0].id

    @on(OptionList.OptionSelected, "#graders-list")
    def _grader_chosen(self, event: OptionList.OptionSelected) -> None:
        name = event.option.id
        if not name or name == self.name_open:
            self.editor.focus()
            return
        if not self.dirty:
            self.open_grader(name)
            return
        from rft_tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.open_grader(name)

        self.app.push_screen(ConfirmScreen(f"Discard your unsaved edits to {self.name_open} and open {name}?",
                                           yes="Discard"), answered)

    @on(GraderFileLoaded)
    def _grader_loaded(self, message: GraderFileLoaded) -> None:
        grader = message.grader
        self._show_file(grader, replace_text=not message.saved or grader.name != self.name_open)
        self.graders[grader.name] = grader.model_copy(update={"content": None})
        if message.saved:
            self.notify(f"Saved {grader.name}" + ("" if grader.valid else " (with errors)"),
                        severity="information" if grader.valid else "warning", timeout=3)
            self.load_graders()

    def _show_file(self, grader: api.GraderFile, replace_text: bool) -> None:
        self.name_open = grader.name
        self.modified_at = grader.modified_at
        self.disk_text = grader.content or ""
        editor = self.editor
        if replace_text:
            editor.load_text(self.disk_text)
            language = language_of(grader.name)
            editor.language = language if language in editor.available_languages else None
        editor.border_title = grader.name
        self._show_errors(grader.errors if grader.valid is False else [], valid=grader.valid)
        self.refresh_bindings()

    def _show_errors(self, errors: list[str], valid: bool | None = None, note: str | None = None) -> None:
        out = Text()
        if note:
            out.append(note + "\n", style="red")
        if errors:
            for e in errors:
                out.append(f"✗ {e}\n", style="red")
        elif valid:
            out.append("✓ valid grader", style="green")
        self.query_one("#grader-errors", Static).update(out)

    @on(GraderSaveRefused)
    def _save_refused(self, message: GraderSaveRefused) -> None:
        if not message.conflict:
            self._show_errors([], note=f"Not saved: {message.message}")
            return
        from rft_tui.screens.confirm import ConfirmScreen

        def answered(overwrite: bool | None) -> None:
            if overwrite:
                self.save(message.name, self.editor.text, None)

        self.app.push_screen(ConfirmScreen(f"{message.name} changed on disk since you opened it. "
                                           "Overwrite it with your version?", yes="Overwrite"), answered)

    @on(DaemonEvent)
    def _daemon_event(self, message: DaemonEvent) -> None:
        event = message.event
        if event.type is api.StreamEventType.file_created:
            self.load_files()
        if event.type is not api.StreamEventType.grader_changed:
            return
        self.load_graders()
        data = event.data or {}
        if data.get("name") != self.name_open:
            return
        if data.get("change") == "deleted":
            self._show_errors([], note=f"{self.name_open} was deleted on disk; ctrl+s saves it again.")
            self.modified_at = None
            return
        self.check_disk(self.name_open)

    @on(ChangedOnDisk)
    def _changed_on_disk(self, message: ChangedOnDisk) -> None:
        grader = message.grader
        if grader.name != self.name_open or grader.modified_at == self.modified_at:
            return  # our own save, or already seen
        if grader.content == self.editor.text:
            self._show_file(grader, replace_text=False)
            return
        if not self.dirty:
            self._show_file(grader, replace_text=True)
            self.notify(f"Reloaded {grader.name}: it changed on disk", timeout=3)
            return
        if self._asking_reload:
            return
        self._asking_reload = True
        from rft_tui.screens.confirm import ConfirmScreen

        def answered(reload: bool | None) -> None:
            self._asking_reload = False
            if reload:
                self.open_grader(grader.name)

        self.app.push_screen(ConfirmScreen(f"{grader.name} changed on disk. Reload it and lose your unsaved edits?",
                                           yes="Reload"), answered)

    @on(GraderRan)
    def _ran(self, message: GraderRan) -> None:
        self.query_one("#pg-result", Static).update(run_text(message.result, message.sample))

    @on(PreflightDone)
    def _preflight_done(self, message: PreflightDone) -> None:
        self.query_one("#pf-result", Static).update(preflight_text(message.report))

    @on(TextArea.Changed, "#grader-editor")
    def _edited(self) -> None:
        if self.name_open:
            self.editor.border_title = f"{self.name_open}{' ●' if self.dirty else ''}"

    @on(Button.Pressed, "#pg-run")
    def _run_pressed(self) -> None:
        self.action_run_grader()

    @on(Button.Pressed, "#pf-run")
    def _preflight_pressed(self) -> None:
        self.action_preflight()

    @on(Input.Submitted, "#grader-new-name")
    def _new_name(self, event: Input.Submitted) -> None:
        name = event.value.strip()
        box = self.query_one("#grader-new-name", Input)
        language = language_of(name)
        if language is None:
            self.notify("A grader file name ends in .json, .yaml, .yml or .py", severity="error")
            return
        if name in self.graders:
            self.notify(f"{name} exists already; pick it in the list", severity="error")
            return
        box.value = ""
        box.add_class("hidden")
        self.name_open = None
        self.save(name, NEW_GRADER_TEMPLATES[language], None)

    # ------------------------------------------------------------------ actions

    def _current_grader(self) -> dict[str, object] | None:
        if self.name_open is None:
            self.notify("Open a grader first", severity="warning")
            return None
        try:
            return grader_from_text(self.name_open, self.editor.text)
        except GraderTextError as e:
            self._show_errors([], note=str(e))
            return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("save", "run_grader", "preflight"):
            return self.name_open is not None
        return True

    def action_save(self) -> None:
        if self.name_open is not None:
            self.save(self.name_open, self.editor.text, self.modified_at)

    def action_run_grader(self) -> None:
        grader = self._current_grader()
        file_id = self.query_one("#pg-file", Select).value
        if grader is None:
            return
        if not isinstance(file_id, str):
            self.notify("Choose a file for the playground's rows", severity="warning")
            return
        try:
            row = int(self.query_one("#pg-row", Input).value or "1")
        except ValueError:
            row = 1
        sample = self.query_one("#pg-sample", Input).value
        field = self.query_one("#pg-field", Input).value.strip() or "answer"
        self.query_one("#pg-result", Static).update(Text("running…", style="dim"))
        self.run_on_row(grader, file_id, max(1, row), sample or None, field)

    def action_preflight(self) -> None:
        grader = self._current_grader()
        file_id = self.query_one("#pg-file", Select).value
        if grader is None:
            return
        if not isinstance(file_id, str):
            self.notify("Choose a training file for the pre-flight", severity="warning")
            return
        model = self.query_one("#pf-model", Input).value.strip() or DEFAULT_MODEL
        self.query_one("#pf-result", Static).update(Text(f"pre-flight on {model}… (samples completions)", style="dim"))
        self.run_preflight(grader, model, file_id)

    def action_leave(self) -> None:
        box = self.query_one("#grader-new-name", Input)
        if box.has_focus:
            box.value = ""
            box.add_class("hidden")
            self.query_one("#graders-list").focus()
            return
        if not self.dirty:
            self.app.pop_screen()
            return
        from rft_tui.screens.confirm import ConfirmScreen

        def answered(leave: bool | None) -> None:
            if leave:
                self.app.pop_screen()

        self.app.push_screen(ConfirmScreen(f"Leave without saving your edits to {self.name_open}?", yes="Leave"),
                             answered)

    def action_new_grader(self) -> None:
        box = self.query_one("#grader-new-name", Input)
        box.remove_class("hidden")
        box.focus()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("New grader file", "Create a grader under RFT_HOME/graders", self.action_new_grader)
        yield SystemCommand("Reload grader files", "List the grader files again", self.load_graders)
        if self.name_open:
            yield SystemCommand(f"Save {self.name_open}", "Validate and save", self.action_save)
            yield SystemCommand("Run grader on row", "Playground", self.action_run_grader)
            yield SystemCommand("Pre-flight", "Reward spread before training", self.action_preflight)

