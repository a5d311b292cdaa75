"""Jobs (home): every job with live status, progress, rewards, elapsed and ETA; control them from here."""

from __future__ import annotations

from collections.abc import Iterable

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Static

from daemon import api
from rft_tui.messages import DaemonEvent, DuplicateReady, JobActionDone, JobFetched, JobsLoaded
from rft_tui.screens.base import RftScreen
from rft_tui.widgets.jobs_table import JobsTable

JOB_EVENTS = (api.StreamEventType.job_status, api.StreamEventType.job_metrics,
              api.StreamEventType.job_validation, api.StreamEventType.job_created, api.StreamEventType.job_alarm)
PAUSABLE = (api.JobStatus.running, api.JobStatus.queued, api.JobStatus.validating_files, api.JobStatus.paused)


class JobsScreen(RftScreen):
    """One row per job; the stream refetches only the job an event names and updates its cells."""

    HELP_TITLE = "Jobs"
    AUTO_FOCUS = "#jobs-table"
    BINDINGS = [
        Binding("n", "new_job", "New job", id="jobs.new", tooltip="Start a new fine-tuning job"),
        Binding("c", "cancel", "Cancel", id="jobs.cancel", tooltip="Cancel the selected job (asks first)"),
        Binding("p", "pause", "Pause/Resume", id="jobs.pause", tooltip="Pause a running job, resume a paused one"),
        Binding("d", "duplicate", "Duplicate", id="jobs.duplicate",
                tooltip="New job with the selected job's settings"),
        Binding("slash", "filter", "Filter", id="jobs.filter", key_display="/",
                tooltip="Show only jobs whose id, status, model or files contain the text"),
        Binding("escape", "clear_filter", "Clear filter", id="jobs.clear_filter", show=False,
                tooltip="Clear the filter"),
        Binding("r", "reload", "Reload", id="jobs.reload", show=False, tooltip="Fetch the jobs list again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, api.FineTuningJob] = {}
        self.filter_text = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter jobs (esc clears)", id="jobs-filter", classes="hidden")
        yield JobsTable(id="jobs-table")
        yield Static("", id="jobs-empty", classes="hint")
        yield Footer()

    @property
    def table(self) -> JobsTable:
        return self.query_one(JobsTable)

    def on_mount(self) -> None:
        self.load_jobs()
        self.set_interval(1.0, self._tick)

    # ------------------------------------------------------------------ workers (fetch, post)

    @work(exclusive=True, group="jobs-list", exit_on_error=False)
    async def load_jobs(self) -> None:
        client = self.app.client
        page = await client.list_jobs(limit=200)
        files = await client.list_files(limit=1000)
        self.post_message(JobsLoaded(list(page.data), {f.id: f.filename for f in files.data}))

    def fetch_job(self, job_id: str) -> None:
        async def fetch() -> None:
            self.post_message(JobFetched(await self.app.client.get_job(job_id)))

        self.fetch(f"job:{job_id}", fetch)

    def control(self, action: str, job_id: str) -> None:
        async def call() -> None:
            client = self.app.client
            fn = {"cancel": client.cancel_job, "pause": client.pause_job, "resume": client.resume_job}[action]
            job = await fn(job_id)
            self.post_message(JobActionDone(action, job_id, job))

        self.run_worker(call(), name=f"{action} {job_id}", group=f"control:{job_id}", exit_on_error=False)

    # ------------------------------------------------------------------ handlers (own state)

    @on(JobsLoaded)
    def _jobs_loaded(self, message: JobsLoaded) -> None:
        self.jobs = {j.id: j for j in message.jobs}
        self.table.file_names = message.file_names
        self._render_all()

    @on(JobFetched)
    def _job_fetched(self, message: JobFetched) -> None:
        job = message.job
        previous = self.jobs.get(job.id)
        is_new = previous is None
        self.jobs[job.id] = job
        if self._matches(job):
            self.table.upsert(job, self.app.clock(), at_top=is_new)
        else:
            self.table.remove_job(job.id)
        self._update_hint()
        if is_new or previous.status is not job.status:  # type: ignore[union-attr]
            self.refresh_bindings()  # the footer recomposes: only when what check_action reads changed

    @on(JobActionDone)
    def _action_done(self, message: JobActionDone) -> None:
        if isinstance(message.result, api.FineTuningJob):
            self.post_message(JobFetched(message.result))
        self.app.control_requested(message.action, message.result)

    @on(DaemonEvent)
    def _daemon_event(self, message: DaemonEvent) -> None:
        event = message.event
        if event.type in JOB_EVENTS and event.job_id:
            self.fetch_job(event.job_id)
        elif event.type is api.StreamEventType.file_created:
            self.load_jobs()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.app.action_open_job(event.row_key.value)

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self.refresh_bindings()

    @on(Input.Changed, "#jobs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip().lower()
        self._render_all()

    @on(Input.Submitted, "#jobs-filter")
    def _filter_submitted(self) -> None:
        self.table.focus()

    def _tick(self) -> None:
        now = self.app.clock()
        for job in self.jobs.values():
            if job.status is api.JobStatus.running and self._matches(job):
                self.table.upsert(job, now)

    def _render_all(self) -> None:
        jobs = sorted((j for j in self.jobs.values() if self._matches(j)), key=api.job_sort_key)
        self.table.show(jobs, self.app.clock())
        self._update_hint()
        self.refresh_bindings()

    def _update_hint(self) -> None:
        hint = ""
        if not self.jobs:
            hint = "No jobs yet. Press n to start one (or run: rft-tui jobs create ...)."
        elif not self.table.row_count:
            hint = f"No job matches '{self.filter_text}'."
        self.query_one("#jobs-empty", Static).update(hint)

    def _matches(self, job: api.FineTuningJob) -> bool:
        if not self.filter_text:
            return True
        from rft_tui.widgets.fmt import file_label

        hay = " ".join([job.id, job.status.value, job.model, file_label(job, self.table.file_names),
                        job.user_provided_suffix or ""])
        return self.filter_text in hay.lower()

    # ------------------------------------------------------------------ actions

    @property
    def selected(self) -> api.FineTuningJob | None:
        job_id = self.table.selected_job_id
        return self.jobs.get(job_id) if job_id else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        job = self.selected
        if action in ("open", "duplicate"):
            return job is not None
        if action == "cancel":
            return job is not None and not job.status.is_terminal()
        if action == "pause":
            return job is not None and job.status in PAUSABLE
        if action == "clear_filter":
            return bool(self.filter_text) or self.query_one("#jobs-filter", Input).has_focus
        return True

    def action_open(self) -> None:
        if self.selected:
            self.app.action_open_job(self.selected.id)

    def action_new_job(self) -> None:
        self.app.action_new_job()

    def action_duplicate(self) -> None:
        """Fetch the full job (lists carry no snapshot), then open the New-job form with it."""
        job = self.selected
        if job is None:
            return

        async def fetch() -> None:
            self.post_message(DuplicateReady(await self.app.client.get_job(job.id)))

        self.fetch(f"duplicate:{job.id}", fetch)

    @on(DuplicateReady)
    def _duplicate_ready(self, message: DuplicateReady) -> None:
        self.app.action_new_job(prefill=message.job)

    def action_cancel(self) -> None:
        job = self.selected
        if job is None or job.status.is_terminal():
            return
        from rft_tui.screens.confirm import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                self.control("cancel", job.id)

        self.app.push_screen(ConfirmScreen(f"Cancel job {job.id} ({job.status.value})?", yes="Cancel job"),
                             answered)

    def action_pause(self) -> None:
        job = self.selected
        if job is None or job.status not in PAUSABLE:
            return
        self.control("resume" if job.status is api.JobStatus.paused else "pause", job.id)

    def action_filter(self) -> None:
        box = self.query_one("#jobs-filter", Input)
        box.remove_class("hidden")
        box.focus()

    def action_reload(self) -> None:
        self.load_jobs()

    def action_clear_filter(self) -> None:
        """Esc clears and hides the filter (the home screen has nothing to go back to)."""
        box = self.query_one("#jobs-filter", Input)
        box.value = ""
        self.filter_text = ""
        box.add_class("hidden")
        self.table.focus()
        self._render_all()

    def palette_commands(self) -> Iterable[SystemCommand]:
        job = self.selected
        yield SystemCommand("Reload jobs", "Fetch the jobs list again", self.action_reload)
        yield SystemCommand("Filter jobs", "Show only matching jobs", self.action_filter)
        if job is not None:
            yield SystemCommand(f"Open {job.id}", "Open the selected job", self.action_open)
            yield SystemCommand(f"Duplicate {job.id}", "New job with these settings", self.action_duplicate)
            if not job.status.is_terminal():
                yield SystemCommand(f"Cancel {job.id}", "Cancel the selected job", self.action_cancel)
