"""Graders: your grader files, the examples and any file you open by path; an editor that validates on save
and follows edits made on disk; a playground that runs the grader over a whole file; a pre-flight check.

Under 110 columns the panes stack: the list on top, then the editor or (ctrl+g) the playground.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Footer, Header, Input, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from daemon import api
from daemon.client import ApiRequestError
from rft_tui.grader_files import GRADER_SUFFIXES, GraderFileChanged, example_graders, read_text_file, write_text_file
from rft_tui.messages import (
    DaemonEvent,
    FilesLoaded,
    GraderFileLoaded,
    GraderFilesLoaded,
    GraderSaveRefused,
    GraderTested,
    GraderTestFailed,
    LocalGraderLoaded,
    PreflightDone,
    RescoreDone,
    WorkerFailed,
)
from rft_tui.screens.base import RftScreen
from rft_tui.widgets.grader_playground import GraderPlayground
from rft_tui.widgets.grader_results import file_report_text, preflight_text
from rft_tui.widgets.grader_text import NEW_GRADER_TEMPLATES, GraderTextError, grader_from_text, language_of
from rft_tui.widgets.path_suggester import PathSuggester

HOME, PATH = "home:", "path:"


class GradersScreen(RftScreen):
    """Left: grader files (yours, the examples, opened by path). Middle: the editor and its errors.
    Right: the playground (a whole file's rows) and pre-flight."""

    HELP_TITLE = "Graders"
    CSS_PATH = "graders.tcss"
    AUTO_FOCUS = "#graders-list"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="graders.save", priority=True,
                tooltip="Save the grader file (validated by the daemon; an example is saved as a copy in your "
                        "graders)"),
        Binding("ctrl+g", "playground", "Playground", id="graders.playground", priority=True,
                tooltip="Move between the editor and the playground (Tab indents inside the editor)"),
        Binding("ctrl+r", "run_grader", "Run on file", id="graders.run", priority=True,
                tooltip="Run the grader over the playground's file: score distribution, errors, lowest rows"),
        Binding("ctrl+o", "open_path", "Open file", id="graders.open", priority=True,
                tooltip="Open any grader file by its path (.json, .yaml, .yml or .py)"),
        Binding("ctrl+f", "preflight", "Pre-flight", id="graders.preflight", priority=True,
                tooltip="Sample completions on the playground's file and show the reward spread"),
        Binding("ctrl+b", "rescore_job", "Re-score job", id="graders.rescore", priority=True,
                tooltip="Grade a job's stored validation outputs with this grader (the job's scores are kept)"),
        Binding("ctrl+n", "new_grader", "New grader", id="graders.new", priority=True,
                tooltip="Create a grader file (name ending in .json, .yaml or .py)"),
        Binding("escape", "leave", "Back", id="graders.back",
                tooltip="Back to the previous screen (asks first when the editor has unsaved edits)"),
    ]

    @dataclass
    class ChangedOnDisk(Message):
        """The open grader file changed on disk (another editor); `grader` is its new state."""

        grader: api.GraderFile

    def __init__(self) -> None:
        super().__init__()
        self.graders: dict[str, api.GraderFile] = {}
        self.files: list[api.FileObject] = []
        self.examples: list[Path] = example_graders()
        self.opened_paths: list[Path] = []  # files opened by path this session (listed under "Opened")
        self.name_open: str | None = None  # a file name in $RFT_HOME/graders, or a path (see path_open)
        self.path_open: Path | None = None  # set when the open grader is a file outside $RFT_HOME/graders
        self.modified_at: float | None = None
        self.disk_text = ""
        self._asking_reload = False

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="graders-body"):
            with Vertical(id="graders-left"):
                listing = OptionList(id="graders-list")
                listing.border_title = "Graders"
                yield listing
                yield Input(placeholder="new file name, e.g. mine.json", id="grader-new-name", classes="hidden")
                yield Input(placeholder="path to a grader file (→ completes, enter opens)", id="grader-open-path",
                            classes="hidden", suggester=PathSuggester(GRADER_SUFFIXES))
            with Vertical(id="grader-main"):
                editor = TextArea.code_editor("", id="grader-editor", soft_wrap=False)
                editor.border_title = "No grader open"
                yield editor
                yield Static("", id="grader-errors")
            yield GraderPlayground(id="playground")
        yield Footer()

    @property
    def editor(self) -> TextArea:
        return self.query_one("#grader-editor", TextArea)

    @property
    def playground(self) -> GraderPlayground:
        return self.query_one(GraderPlayground)

    @property
    def dirty(self) -> bool:
        return self.name_open is not None and self.editor.text != self.disk_text

    @property
    def is_example(self) -> bool:
        return self.path_open is not None and self.path_open in self.examples

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
    async def run_on_file(self, grader: dict[str, object], file_id: str, field: str | None, limit: int) -> None:
        """Every row of the file through the grader (the `graders test` endpoint the CLI uses)."""
        try:
            report = await self.app.client.test_grader(grader, file_id, field=field, limit=limit)
        except ApiRequestError as e:
            self.post_message(GraderTestFailed(e.error.message))
            return
        self.post_message(GraderTested(report))

    @work(exclusive=True, group="grader-open", exit_on_error=False)
    async def open_path(self, path: Path, saved: bool = False) -> None:
        """Read a grader file outside $RFT_HOME/graders and have the daemon check it."""
        try:
            text, mtime = await asyncio.to_thread(read_text_file, path)
        except (OSError, UnicodeDecodeError) as e:
            self.app.post_message(WorkerFailed(f"Cannot open {path}", str(e)))
            return
        self.post_message(LocalGraderLoaded(str(path), text, mtime, await self._problems(path.name, text), saved))

    async def _problems(self, name: str, text: str) -> list[str]:
        try:
            grader = grader_from_text(name, text)
        except GraderTextError as e:
            return [str(e)]
        try:
            await self.app.client.validate_grader(grader)
        except ApiRequestError as e:
            return [e.error.message]
        return []

    @work(exclusive=True, group="grader-save", exit_on_error=False)
    async def save_path(self, path: Path, content: str, expected: float | None) -> None:
        try:
            await asyncio.to_thread(write_text_file, path, content, expected)
        except GraderFileChanged as e:
            self.post_message(GraderSaveRefused(str(path), str(e), conflict=True))
            return
        except OSError as e:
            self.post_message(GraderSaveRefused(str(path), f"cannot write {path}: {e}"))
            return
        self.open_path(path, saved=True)

    @work(exclusive=True, group="grader-preflight", exit_on_error=False)
    async def run_preflight(self, grader: dict[str, object], model: str, training_file: str) -> None:
        request = api.PreflightRequest(model=model, training_file=training_file,
                                       method=api.JobMethod(reinforcement=api.ReinforcementMethod(grader=grader)))
        try:
            report = await self.app.client.preflight(request)
        except ApiRequestError as e:  # a misspelled model, a grader the rows cannot feed: say it here
            self.playground.show_preflight(Text(f"✗ {e.error.message}", style="red"))
            return
        self.post_message(PreflightDone(report))

    # ------------------------------------------------------------------ handlers (own state)

    @on(GraderFilesLoaded)
    def _graders_loaded(self, message: GraderFilesLoaded) -> None:
        self.graders = {g.name: g for g in message.graders}
        self._fill_list()
        if not message.graders:
            self.query_one("#grader-errors", Static).update(Text(
                "No grader files of your own yet: ctrl+n creates one, or open an example from the list.",
                style="dim"))
        elif self.name_open is None:
            self.open_grader(message.graders[0].name)

    def _fill_list(self) -> None:
        """Your graders, then the examples, then files opened by path; the open one highlighted."""
        listing = self.query_one("#graders-list", OptionList)
        listing.clear_options()
        options: list[Option] = [_heading("Your graders")]
        for g in self.graders.values():
            mark = Text("✓ ", style="green") if g.valid else Text("✗ ", style="red")
            options.append(Option(mark + Text(g.name), id=HOME + g.name))
        if self.examples:
            options.append(_heading("Examples"))
            options += [Option(Text(_example_label(p)), id=PATH + str(p)) for p in self.examples]
        others = [p for p in self.opened_paths if p not in self.examples]
        if others:
            options.append(_heading("Opened"))
            options += [Option(Text(str(p)), id=PATH + str(p)) for p in others]
        options.append(Option(Text("Open a file… (ctrl+o)", style="italic"), id="open"))
        listing.add_options(options)
        current = ((PATH + str(self.path_open)) if self.path_open
                   else (HOME + self.name_open if self.name_open else None))
        ids = [o.id for o in options]
        if current in ids:
            listing.highlighted = ids.index(current)

    @on(FilesLoaded)
    def _files_loaded(self, message: FilesLoaded) -> None:
        self.files = message.files
        self.playground.show_files(message.files)

    @on(OptionList.OptionSelected, "#graders-list")
    def _grader_chosen(self, event: OptionList.OptionSelected) -> None:
        choice = event.option.id or ""
        if choice == "open":
            self.action_open_path()
            return
        current = (PATH + str(self.path_open)) if self.path_open else (HOME + (self.name_open or ""))
        if choice == current:
            self.editor.focus()
            return
        self._unless_dirty(f"open {choice.partition(':')[2]}", lambda: self._open_choice(choice))

    def _open_choice(self, choice: str) -> None:
        kind, _, name = choice.partition(":")
        if kind + ":" == PATH:
            self.open_path(Path(name))
        else:
            self.open_grader(name)

    def _unless_dirty(self, what: str, then: Callable[[], object]) -> None:
        """Run `then()` now, or after the user agrees to drop unsaved edits."""
        if not self.dirty:
            then()
            return
        from rft_tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmScreen(f"Discard your unsaved edits to {self.name_open} and {what}?",
                                           yes="Discard"), answered)

    @on(GraderFileLoaded)
    def _grader_loaded(self, message: GraderFileLoaded) -> None:
        grader = message.grader
        replace = not message.saved or grader.name != self.name_open or self.path_open is not None
        self.path_open = None
        self._show_file(grader, replace_text=replace)
        self.graders[grader.name] = grader.model_copy(update={"content": None})
        if message.saved:
            self.notify(f"Saved {grader.name}" + ("" if grader.valid else " (with errors)"),
                        severity="information" if grader.valid else "warning", timeout=3)
            self.load_graders()
        self._fill_list()

    @on(LocalGraderLoaded)
    def _local_loaded(self, message: LocalGraderLoaded) -> None:
        path = Path(message.path)
        self.path_open = path
        if path not in self.opened_paths and path not in self.examples:
            self.opened_paths.append(path)
        self.name_open = str(path)
        self.modified_at = message.modified_at
        self.disk_text = message.content
        if not message.saved:
            self.editor.load_text(message.content)
            language = language_of(path.name)
            self.editor.language = language if language in self.editor.available_languages else None
        self.editor.border_title = str(path) + (" (example)" if self.is_example else "")
        self._show_errors(message.errors, valid=not message.errors)
        if message.saved:
            self.notify(f"Saved {path}", timeout=3)
        self._fill_list()
        self.refresh_bindings()

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
            if not overwrite:
                return
            if self.path_open is not None and str(self.path_open) == message.name:
                self.save_path(self.path_open, self.editor.text, None)
            else:
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
        if self.path_open is not None or data.get("name") != self.name_open:
            return
        if data.get("change") == "deleted":
            self._show_errors([], note=f"{self.name_open} was deleted on disk; ctrl+s saves it again.")
            self.modified_at = None
            return
        self.check_disk(self.name_open)

    @on(ChangedOnDisk)
    def _changed_on_disk(self, message: ChangedOnDisk) -> None:
        grader = message.grader
        if self.path_open is not None or grader.name != self.name_open or grader.modified_at == self.modified_at:
            return  # our own save, already seen, or another file is open now
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

    @on(GraderTested)
    def _tested(self, message: GraderTested) -> None:
        self.playground.show_result(file_report_text(message.report))

    @on(GraderTestFailed)
    def _test_failed(self, message: GraderTestFailed) -> None:
        self.playground.show_result(Text(f"✗ {message.message}", style="red"))

    @on(PreflightDone)
    def _preflight_done(self, message: PreflightDone) -> None:
        self.playground.show_preflight(preflight_text(message.report))

    @on(TextArea.Changed, "#grader-editor")
    def _edited(self) -> None:
        if self.name_open:
            title = (str(self.path_open) + (" (example)" if self.is_example else "") if self.path_open
                     else self.name_open)
            self.editor.border_title = f"{title}{' ●' if self.dirty else ''}"

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
        self.path_open = None
        self.save(name, NEW_GRADER_TEMPLATES[language], None)

    @on(Input.Submitted, "#grader-open-path")
    def _path_given(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        try:
            path = Path(text).expanduser().resolve()
        except (RuntimeError, OSError) as e:
            self.notify(f"Cannot use {text}: {e}", severity="error")
            return
        if language_of(path.name) is None:
            self.notify("A grader file ends in .json, .yaml, .yml or .py", severity="error")
            return
        box = self.query_one("#grader-open-path", Input)
        box.value = ""
        box.add_class("hidden")
        self.editor.focus()
        self._unless_dirty(f"open {path}", lambda: self.open_path(path))

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
        if action in ("save", "run_grader", "preflight", "rescore_job"):
            return self.name_open is not None
        return True

    def action_save(self) -> None:
        if self.name_open is None:
            return
        if self.is_example and self.path_open is not None:
            self._save_example_copy(self.path_open)
        elif self.path_open is not None:
            self.save_path(self.path_open, self.editor.text, self.modified_at)
        else:
            self.save(self.name_open, self.editor.text, self.modified_at)

    def _save_example_copy(self, example: Path) -> None:
        """Examples stay as shipped: saving one keeps your version in $RFT_HOME/graders under its name."""
        name = example.name if example.parent.name == "graders" else f"{example.parent.name}{example.suffix}"
        text = self.editor.text
        if name not in self.graders:
            self.save(name, text, None)
            return
        from rft_tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.save(name, text, None)

        self.app.push_screen(ConfirmScreen(f"You already have a grader {name}. Overwrite it with this example?",
                                           yes="Overwrite"), answered)

    def action_playground(self) -> None:
        """Tab indents in the editor, so this key moves between the editor and the playground."""
        in_playground = self.focused is not None and self.playground in self.focused.ancestors_with_self
        self.set_class(not in_playground, "-playground")
        if in_playground:
            self.editor.focus()
        else:
            self.call_after_refresh(self.query_one("#pg-file").focus)

    def action_run_grader(self) -> None:
        grader = self._current_grader()
        if grader is None:
            return
        run = self.playground.run_request()
        if isinstance(run, str):
            self.notify(run, severity="warning")
            return
        self.set_class(True, "-playground")  # on a narrow terminal, show where the answer goes
        name = next((file.filename for file in self.files if file.id == run.file_id), run.file_id)
        self.playground.show_result(Text(f"grading up to {run.limit} rows of {name}…", style="dim"))
        self.run_on_file(grader, run.file_id, run.field, run.limit)

    def action_preflight(self) -> None:
        grader = self._current_grader()
        file_id = self.playground.file_id
        if grader is None:
            return
        if file_id is None:
            self.notify("Choose a training file for the pre-flight", severity="warning")
            return
        self.set_class(True, "-playground")
        model = self.playground.model
        self.playground.show_preflight(Text(f"pre-flight on {model}… (samples completions)", style="dim"))
        self.run_preflight(grader, model, file_id)

    def action_rescore_job(self) -> None:
        """Choose a job with stored validation outputs, then re-score them with the grader in the editor."""
        grader = self._current_grader()
        if grader is None:
            return

        async def pick() -> None:
            from rft_tui.screens.grader_picker import JobPickerScreen

            jobs = [j for j in (await self.app.client.list_jobs(limit=100)).data
                    if j.progress is not None and j.progress.valid_reward_base is not None]
            self.app.push_screen(JobPickerScreen(f"Re-score which job with {self.name_open}?", jobs),
                                 lambda chosen: self.rescore(chosen.choice, grader, chosen.samples) if chosen else None)

        self.run_worker(pick(), name="jobs", group="rescore-pick", exit_on_error=False)

    def rescore(self, job_id: str, grader: dict[str, object], samples: bool = False) -> None:
        self.notify(f"Re-scoring {job_id} with {self.name_open}…", timeout=4)

        async def call() -> None:
            result = await self.app.client.rescore(job_id, api.RescoreRequest(grader=grader, samples=samples))
            self.post_message(RescoreDone(job_id, result))

        self.run_worker(call(), name="re-score", group="rescore", exit_on_error=False)

    @on(RescoreDone)
    def _rescored(self, message: RescoreDone) -> None:
        from rft_tui.screens.grader_picker import rescoring_text
        from rft_tui.screens.text_modal import TextModal

        self.app.push_screen(TextModal(f"Re-scored {message.job_id}", rescoring_text(message.result)
                                       + f"\n\nIn the job's Validation tab, v shows '{message.result.name}'."))

    def action_leave(self) -> None:
        for box_id in ("#grader-new-name", "#grader-open-path"):
            box = self.query_one(box_id, Input)
            if box.has_focus:
                box.value = ""
                box.add_class("hidden")
                self.query_one("#graders-list").focus()
                return
        if self.has_class("-narrow") and self.has_class("-playground"):
            self.action_playground()  # back to the editor first
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

    def action_open_path(self) -> None:
        box = self.query_one("#grader-open-path", Input)
        box.remove_class("hidden")
        box.focus()

    def palette_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("New grader file", "Create a grader under RFT_HOME/graders", self.action_new_grader)
        yield SystemCommand("Open grader file…", "Open any grader file by its path", self.action_open_path)
        yield SystemCommand("Reload grader files", "List the grader files again", self.load_graders)
        for example in self.examples:
            yield SystemCommand(f"Open example {_example_label(example)}", str(example),
                                lambda p=example: self._unless_dirty(f"open {p}", lambda: self.open_path(p)))
        if self.name_open:
            yield SystemCommand(f"Save {self.name_open}", "Validate and save", self.action_save)
            yield SystemCommand("Run grader on file", "Playground: every row of the chosen file",
                                self.action_run_grader)
            yield SystemCommand("Pre-flight", "Reward spread before training", self.action_preflight)
            yield SystemCommand("Re-score a job…", "Grade a job's stored validation outputs with this grader",
                                self.action_rescore_job)


def _heading(text: str) -> Option:
    return Option(Text(text, style="bold dim"), disabled=True)


def _example_label(path: Path) -> str:
    return path.name if path.parent.name == "graders" else f"{path.parent.name}/{path.name}"
