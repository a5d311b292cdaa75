"""One job: Overview, Rewards (live chart + metrics table), Validation, Samples, Events/log, Health tabs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.widgets import DataTable, Footer, Header, Select, Static, TabbedContent, TabPane

from daemon import api
from rft_tui import messages as m
from rft_tui.screens.base import RftScreen
from rft_tui.screens.job_view import JobView, chart_series, tool_use_text
from rft_tui.widgets import overview as ov
from rft_tui.widgets.events_log import EventsLog, WorkerLog
from rft_tui.widgets.health_panel import HealthPanel
from rft_tui.widgets.metrics_table import MetricsTable
from rft_tui.widgets.reward_chart import RewardChart
from rft_tui.widgets.samples_table import SamplesTable, sub_rewards_text
from rft_tui.widgets.validation_table import CHANGE_FILTERS, SORTS, ValidationTable, aggregates, compare, summary_text

if TYPE_CHECKING:
    from rft_tui.screens.grader_picker import RescorePick

TABS = ("overview", "rewards", "validation", "samples", "events", "health")
# fetched per step only when shown
LAZY_TAB = {"job": "overview", "samples": "samples", "events": "events", "alarms": "health"}
PAUSABLE = (api.JobStatus.running, api.JobStatus.queued, api.JobStatus.validating_files, api.JobStatus.paused)


class JobScreen(RftScreen):
    """Holds one `JobView` in a reactive; workers fetch only what a stream event says changed."""

    HELP_TITLE = "Job"
    DEFAULT_CSS = """
    JobScreen #overview-scroll { height: 1fr; }
    JobScreen #hp-title, JobScreen #ckpt-title { text-style: bold; margin-top: 1; }
    JobScreen #valid-bar { height: auto; }
    JobScreen #valid-bar Select { width: 34; }
    JobScreen #valid-summary { padding: 0 1; height: auto; width: 1fr; }  /* wraps at 80 columns instead of cut */
    JobScreen #valid-compare { padding: 0 1; height: auto; }
    JobScreen #rewards-help { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        *[Binding(str(i + 1), f"show_tab('{t}')", t.capitalize(), id=f"job.tab.{t}", show=False,
                  tooltip=f"Show the {t} tab") for i, t in enumerate(TABS)],
        Binding("c", "cancel", "Cancel", id="job.cancel", tooltip="Cancel this job (asks first)"),
        Binding("p", "pause", "Pause/Resume", id="job.pause", tooltip="Pause (checkpoint and stop) or resume"),
        Binding("d", "duplicate", "Duplicate", id="job.duplicate", tooltip="New job with these settings"),
        Binding("x", "export", "Export ckpt", id="job.export", tooltip="Export the highlighted checkpoint"),
        Binding("s", "toggle_smoothing", "Raw/smooth", id="job.smooth",
                tooltip="Rewards chart: raw, smoothed, or both train lines"),
        Binding("g", "toggle_graders", "Graders", id="job.graders", tooltip="Rewards chart: per-grader lines"),
        Binding("f", "cycle_filter", "Filter", id="job.valid_filter",
                tooltip="Validation: all / improved / regressed / unchanged rows"),
        Binding("o", "cycle_sort", "Sort", id="job.valid_sort", tooltip="Validation: sort by row, change, base, score"),
        Binding("R", "rescore", "Re-score…", id="job.rescore",
                tooltip="Validation: grade the stored outputs again with another grader (originals are kept)"),
        Binding("v", "cycle_scores", "Scores", id="job.valid_scores",
                tooltip="Validation: the original scores or one of the job's re-scorings"),
        Binding("r", "reload", "Reload", id="job.reload", show=False, tooltip="Fetch everything again"),
    ]

    view: reactive[JobView] = reactive(JobView, always_update=True, init=False)

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.smoothing = "both"
        self.per_grader = False
        self.change_filter = "all"
        self.sort = "row"
        self.selected_step: int | None = None
        self.scores: str | None = None  # None: the original scores; else a re-scoring's name
        self.rescorings: list[str] = []
        self._shown = JobView()
        self._stale: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="job-tabs", initial="overview"):
            with TabPane("Overview", id="overview"):
                with VerticalScroll(id="overview-scroll"):
                    yield Static("Loading…", id="overview-text")
                    yield Static("Checkpoints (x exports the highlighted one)", id="ckpt-title")
                    yield ov.CheckpointsTable(id="checkpoints")
                    yield Static("Resolved hyperparameters", id="hp-title")
                    yield Static("", id="hp-text")
            with TabPane("Rewards", id="rewards"):
                yield RewardChart(id="reward-chart")
                yield Static("s raw/smoothed · g per-grader lines", id="rewards-help")
                yield MetricsTable(id="metrics")
            with TabPane("Validation", id="validation"):
                with Horizontal(id="valid-bar"):
                    yield Select[int]([], prompt="step", id="valid-step", allow_blank=True)
                    yield Static("", id="valid-summary")
                yield Static("", id="valid-compare")
                yield ValidationTable(id="valid-table")
            with TabPane("Samples", id="samples"):
                yield SamplesTable(id="samples-table")
            with TabPane("Events", id="events"):
                yield EventsLog(id="events-log")
                yield WorkerLog(id="worker-log")
            with TabPane("Health", id="health"):
                yield HealthPanel(id="health-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.job_id
        for kind in ("job", "metrics", "validation", "samples", "events", "rescorings", "alarms"):
            self.refresh_kind(kind)
        self.set_interval(1.0, self._tick)

    # ------------------------------------------------------------------ workers (fetch, post)

    def refresh_kind(self, kind: str) -> None:
        """Fetch one kind of data; a request while one is in flight runs once it finishes (no pile-up)."""
        self.fetch(kind, getattr(self, f"_fetch_{kind}"))

    async def _fetch_job(self) -> None:
        client = self.app.client
        self.post_message(m.JobFetched(await client.get_job(self.job_id)))
        page = await client.list_checkpoints(self.job_id, limit=100)
        self.post_message(m.CheckpointsLoaded(self.job_id, list(page.data)))

    async def _fetch_metrics(self) -> None:
        page = await self.app.client.metrics(self.job_id, after_step=self.view.last_step)
        self.post_message(m.MetricsAppended(self.job_id, list(page.data)))

    async def _fetch_validation(self) -> None:
        client = self.app.client
        scores = self.scores
        latest = await client.validation(self.job_id, step=self.selected_step, rescoring=scores)
        steps = list(latest.steps)
        if not steps:
            self.post_message(m.ValidationLoaded(self.job_id, None, latest))
            self.post_message(m.ValidationCompared(self.job_id, None))
            return
        base = latest if latest.step == steps[0] else await client.validation(self.job_id, step=steps[0],
                                                                              rescoring=scores)
        compare = None
        if base.step is not None and latest.step is not None and latest.step != base.step:
            compare = await client.validation_compare(self.job_id, step=latest.step, base_step=base.step,
                                                      rescoring=scores)
        self.post_message(m.ValidationCompared(self.job_id, compare))
        if scores is not None:  # the reward curve stays on the original scores
            self.post_message(m.ValidationLoaded(self.job_id, base, latest))
            return
        known = {s for s, _, _ in self.view.valid_curve}
        points = []
        for step in steps:
            if step in known:
                continue
            page = latest if step == latest.step else (base if step == base.step else
                                                         await client.validation(self.job_id, step=step))
            points.append((step, *_page_means(page)))
        self.post_message(m.ValidationCurve(self.job_id, points))
        self.post_message(m.ValidationLoaded(self.job_id, base, latest))

    async def _fetch_rescorings(self) -> None:
        page = await self.app.client.list_rescorings(self.job_id)
        self.post_message(m.RescoringsListed(self.job_id, [r.name for r in page.data]))

    async def _fetch_alarms(self) -> None:
        page = await self.app.client.list_alarms(self.job_id)
        self.post_message(m.AlarmsLoaded(self.job_id, list(page.data)))

    async def _fetch_samples(self) -> None:
        page = await self.app.client.samples(self.job_id, limit=100)
        self.post_message(m.SamplesLoaded(self.job_id, list(page.data)))

    async def _fetch_events(self) -> None:
        client = self.app.client
        events = await client.list_events(self.job_id, limit=100)
        log = await client.job_log(self.job_id, lines=200)
        self.post_message(m.EventsLoaded(self.job_id, list(events.data), log))

    # ------------------------------------------------------------------ handlers (own state)

    @on(m.DaemonEvent)
    def _daemon_event(self, message: m.DaemonEvent) -> None:
        event = message.event
        if event.job_id != self.job_id:
            return
        T = api.StreamEventType
        if event.type is T.job_metrics:
            self.refresh_kind("metrics")
            self.refresh_lazy("job", "samples")
        elif event.type is T.job_validation:
            self.refresh_kind("validation")
            self.refresh_kind("job")
        elif event.type is T.job_status:
            self.refresh_kind("job")
            self.refresh_lazy("events")
        elif event.type is T.job_event:
            self.refresh_lazy("events", "alarms")  # an alarm clearing is an event
        elif event.type is T.job_alarm:
            self.refresh_kind("alarms")
            self.refresh_kind("job")

    def refresh_lazy(self, *kinds: str) -> None:
        """Fetch now what the visible tab shows; the rest when its tab is opened (keeps live steps cheap)."""
        for kind in kinds:
            if LAZY_TAB.get(kind, self.active_tab) == self.active_tab:
                self.refresh_kind(kind)
            else:
                self._stale.add(kind)

    @on(m.JobFetched)
    def _job(self, message: m.JobFetched) -> None:
        self.view = replace(self.view, job=message.job)

    @on(m.CheckpointsLoaded)
    def _checkpoints(self, message: m.CheckpointsLoaded) -> None:
        self.view = replace(self.view, checkpoints=tuple(message.checkpoints))

    @on(m.MetricsAppended)
    def _metrics(self, message: m.MetricsAppended) -> None:
        last = self.view.last_step
        new = tuple(s for s in message.steps if last is None or s.step > last)
        if new:
            self.view = replace(self.view, metrics=self.view.metrics + new)

    @on(m.ValidationCurve)
    def _curve(self, message: m.ValidationCurve) -> None:
        if message.points:
            curve = {s: (s, r, g) for s, r, g in self.view.valid_curve}
            curve.update((s, (s, r, g)) for s, r, g in message.points)
            self.view = replace(self.view, valid_curve=tuple(curve[s] for s in sorted(curve)))

    @on(m.ValidationLoaded)
    def _validation(self, message: m.ValidationLoaded) -> None:
        steps = tuple(message.selected.steps) if message.selected else ()
        self.view = replace(self.view, base=message.base, selected=message.selected, validation_steps=steps)

    @on(m.ValidationCompared)
    def _compared(self, message: m.ValidationCompared) -> None:
        self.view = replace(self.view, compare=message.compare)

    @on(m.RescoringsListed)
    def _rescorings(self, message: m.RescoringsListed) -> None:
        self.rescorings = list(message.names)
        self.refresh_bindings()

    @on(m.RescoreDone)
    def _rescored(self, message: m.RescoreDone) -> None:
        from rft_tui.screens.grader_picker import rescoring_text
        from rft_tui.screens.text_modal import TextModal

        if message.result.name not in self.rescorings:
            self.rescorings.append(message.result.name)
        self._show_scores(message.result.name)
        self.app.push_screen(TextModal(f"Re-scored {self.job_id}", rescoring_text(message.result)))

    @on(m.AlarmsLoaded)
    def _alarms(self, message: m.AlarmsLoaded) -> None:
        self.view = replace(self.view, alarms=tuple(message.alarms))

    @on(m.SamplesLoaded)
    def _samples(self, message: m.SamplesLoaded) -> None:
        self.view = replace(self.view, samples=tuple(message.samples))

    @on(m.EventsLoaded)
    def _events(self, message: m.EventsLoaded) -> None:
        self.view = replace(self.view, events=tuple(message.events), log=message.log)

    @on(m.JobActionDone)
    def _action_done(self, message: m.JobActionDone) -> None:
        if isinstance(message.result, api.FineTuningJob):
            self.view = replace(self.view, job=message.result)
        self.app.control_requested(message.action, message.result)

    @on(m.ExportDone)
    def _export_done(self, message: m.ExportDone) -> None:
        result = message.result if isinstance(message.result, dict) else {}
        where = result.get("merged_dir") or result.get("adapter_dir") or result.get("output_dir")
        self.notify(f"Exported {message.checkpoint_id}" + (f" to {where}" if where else ""), title="Export",
                    timeout=10)
        self.refresh_kind("events")

    # ------------------------------------------------------------------ rendering

    def watch_view(self, view: JobView) -> None:
        """Push what changed (by identity) into the widgets; tables only gain rows."""
        old, self._shown = self._shown, view
        with self.app.batch_update():
            if view.job is not old.job and view.job is not None:
                self._render_job(view.job)
            elif view.job is not None and (view.metrics is not old.metrics or view.base is not old.base
                                           or view.selected is not old.selected):
                self._render_overview(view.job)  # its tool-call line reads metrics and validation
            if view.checkpoints is not old.checkpoints:
                self.query_one(ov.CheckpointsTable).show(list(view.checkpoints))
            if view.metrics is not old.metrics:
                self.query_one(MetricsTable).append_steps(view.metrics[len(old.metrics):])
            if view.metrics is not old.metrics or view.valid_curve is not old.valid_curve:
                self._render_chart(view)
            if view.base is not old.base or view.selected is not old.selected:
                self._render_validation(view)
            if view.compare is not old.compare:
                self.query_one("#valid-compare", Static).update(compare_text(view.compare, self.scores))
            if view.samples is not old.samples:
                self.query_one(SamplesTable).append_samples(view.samples)
            if view.events is not old.events:
                self.query_one(EventsLog).add_events(view.events)
            if view.log is not old.log and view.log is not None:
                self.query_one(WorkerLog).show_tail(view.log.lines)
            if view.metrics is not old.metrics or (view.job is not old.job and view.job is not None
                                                   and view.job.snapshot is not None):
                self.query_one(HealthPanel).show(view.metrics, view.job)
            if view.alarms is not old.alarms:
                self.query_one(HealthPanel).show_alarms(view.alarms)
        def status(v: JobView) -> api.JobStatus | None:
            return v.job.status if v.job else None

        if status(view) != status(old) or bool(view.checkpoints) != bool(old.checkpoints):
            self.refresh_bindings()  # the footer recomposes: only when what check_action reads changed

    def _render_job(self, job: api.FineTuningJob) -> None:
        self.sub_title = f"{job.id} · {job.status.value}"
        self._render_overview(job)
        self.query_one("#hp-text", Static).update(ov.hyperparameters(job))

    def _render_overview(self, job: api.FineTuningJob) -> None:
        self.query_one("#overview-text", Static).update(ov.overview(job, self.app.clock(),
                                                                    tool_use=tool_use_text(self.view)))

    def _render_chart(self, view: JobView) -> None:
        chart = self.query_one(RewardChart)
        chart.set_series(chart_series(view, raw=self.smoothing in ("raw", "both"),
                                      smoothed=self.smoothing in ("smoothed", "both"), per_grader=self.per_grader))

    def _render_validation(self, view: JobView) -> None:
        select = self.query_one("#valid-step", Select)
        options = [(f"step {s}" + (" (base)" if s == 0 else ""), s) for s in view.validation_steps]
        if [v for _, v in options] != [v for _, v in getattr(self, "_valid_options", [])]:
            self._valid_options = options
            with select.prevent(Select.Changed):
                select.set_options(options)
                if view.selected is not None and view.selected.step is not None:
                    select.value = view.selected.step
        rows = compare(view.base.data if view.base else [], view.selected.data if view.selected else [])
        step = view.selected.step if view.selected else None
        self.query_one("#valid-summary", Static).update(summary_text(aggregates(rows), step) if rows else
                                                       "No validation yet (it runs at step 0 and every eval_interval).")
        self.query_one(ValidationTable).show(rows, self.change_filter, self.sort)

    def _tick(self) -> None:
        job = self.view.job
        if job is not None and job.status is api.JobStatus.running:
            self._render_overview(job)

    # ------------------------------------------------------------------ user events

    @on(Select.Changed, "#valid-step")
    def _step_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, int) and event.value != self.selected_step:
            self.selected_step = event.value
            self.refresh_kind("validation")

    @on(DataTable.RowSelected, "#samples-table")
    def _sample_selected(self, event: DataTable.RowSelected) -> None:
        from rft_tui.screens.text_modal import TextModal, sections
        from rft_tui.screens.trajectory import TrajectoryScreen
        from rft_tui.widgets.trajectory import sample_episodes

        sample = self.query_one(SamplesTable).samples.get(str(event.row_key.value))
        if sample is None:
            return
        if episodes := sample_episodes(sample):  # agent RFT: the episode turn by turn
            self.app.push_screen(TrajectoryScreen(f"Trajectory · sample {sample.id} · step {sample.step}", episodes))
            return
        body = sections(("Prompt", sample.prompt), ("Completion", sample.completion),
                        ("Reward", f"{sample.reward:.4f}"), ("Sub-rewards", sub_rewards_text(sample.sub_rewards)),
                        ("Errors", str(sample.errors) if sample.errors else None))
        self.app.push_screen(TextModal(f"Sample {sample.id} · step {sample.step}", body))

    @on(DataTable.RowSelected, "#valid-table")
    def _valid_selected(self, event: DataTable.RowSelected) -> None:
        from rft_tui.screens.text_modal import TextModal, sections
        from rft_tui.screens.trajectory import TrajectoryScreen
        from rft_tui.widgets.trajectory import validation_episodes

        rows = {str(r.row_index): r for r in self.query_one(ValidationTable).rows_shown}
        r = rows.get(str(event.row_key.value))
        if r is None:
            return
        if episodes := validation_episodes(r.prompt, r.base, r.selected):  # agent RFT: base and step episodes
            title = f"Trajectory · validation row {r.row_index} · {r.verdict}"
            self.app.push_screen(TrajectoryScreen(title + (f" · answer {r.reference}" if r.reference else ""),
                                                  episodes))
            return
        body = sections(("Prompt", r.prompt), ("Reference", r.reference),
                        ("Base output" + (f" (reward {r.base.reward:.3f})" if r.base else ""),
                         r.base.output if r.base else None),
                        (f"Step {r.selected.step} output (reward {r.selected.reward:.3f})" if r.selected else "",
                         r.selected.output if r.selected else None),
                        ("Sub-rewards", sub_rewards_text(r.selected.sub_rewards) if r.selected else None))
        self.app.push_screen(TextModal(f"Validation row {r.row_index} · {r.verdict}", body))

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        for kind in [k for k in self._stale if LAZY_TAB.get(k) == self.active_tab]:
            self._stale.discard(kind)
            self.refresh_kind(kind)
        self.refresh_bindings()

    # ------------------------------------------------------------------ actions

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        job = self.view.job
        tab = self.active_tab if self.is_mounted else "overview"
        if action == "cancel":
            return job is not None and not job.status.is_terminal()
        if action == "pause":
            return job is not None and job.status in PAUSABLE
        if action == "duplicate":
            return job is not None
        if action == "export":
            return tab == "overview" and bool(self.view.checkpoints)
        if action in ("toggle_smoothing", "toggle_graders"):
            return tab == "rewards"
        if action in ("cycle_filter", "cycle_sort"):
            return tab == "validation"
        if action == "rescore":
            return tab == "validation" and bool(self.view.validation_steps or self.rescorings)
        if action == "cycle_scores":
            return tab == "validation" and bool(self.rescorings)
        return True

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def control(self, action: str) -> None:
        async def call() -> None:
            client = self.app.client
            fn = {"cancel": client.cancel_job, "pause": client.pause_job, "resume": client.resume_job}[action]
            self.post_message(m.JobActionDone(action, self.job_id, await fn(self.job_id)))

        self.run_worker(call(), name=f"{action} {self.job_id}", group="control", exit_on_error=False)

    def action_cancel(self) -> None:
        from rft_tui.screens.confirm import ConfirmScreen

        job = self.view.job
        if job is None or job.status.is_terminal():
            return
        self.app.push_screen(ConfirmScreen(f"Cancel job {job.id} ({job.status.value})?", yes="Cancel job"),
                             lambda yes: self.control("cancel") if yes else None)

    def action_pause(self) -> None:
        job = self.view.job
        if job is not None and job.status in PAUSABLE:
            self.control("resume" if job.status is api.JobStatus.paused else "pause")

    def action_duplicate(self) -> None:
        if self.view.job is not None:
            self.app.action_new_job(prefill=self.view.job)

    def action_export(self) -> None:
        """Ask where (a directory on the daemon's machine), then export the highlighted checkpoint's adapter."""
        from pathlib import Path

        from rft_tui.screens.prompt import PromptScreen

        table = self.query_one(ov.CheckpointsTable)
        step = table.selected_step
        if step is None:
            return
        default = str(Path.home() / "rft-exports" / f"{self.job_id}-step-{step}")

        def chosen(output_dir: str | None) -> None:
            if output_dir:
                self.notify(f"Exporting step {step} to {output_dir}…", timeout=4)
                self.export(step, output_dir)

        self.app.push_screen(PromptScreen(f"Export the LoRA adapter of step {step} to (on the daemon's machine):",
                                          default), chosen)

    def export(self, step: int, output_dir: str) -> None:
        async def call() -> None:
            result = await self.app.client.export_job(
                self.job_id, api.JobExportRequest(output_dir=output_dir, checkpoint_step=step))
            self.post_message(m.ExportDone(self.job_id, result.checkpoint, result.model_dump(mode="json")))

        self.run_worker(call(), name=f"export step {step}", group="export", exit_on_error=False)

    def action_toggle_smoothing(self) -> None:
        order = ("both", "smoothed", "raw")
        self.smoothing = order[(order.index(self.smoothing) + 1) % len(order)]
        self._render_chart(self.view)
        self.notify(f"Train reward: {self.smoothing}", timeout=2)

    def action_toggle_graders(self) -> None:
        self.per_grader = not self.per_grader
        self._render_chart(self.view)

    def action_cycle_filter(self) -> None:
        self.change_filter = CHANGE_FILTERS[(CHANGE_FILTERS.index(self.change_filter) + 1) % len(CHANGE_FILTERS)]
        self._render_validation(self.view)
        self.notify(f"Validation rows: {self.change_filter}", timeout=2)

    def action_cycle_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self._render_validation(self.view)
        self.notify(f"Validation sorted by {self.sort}", timeout=2)

    def action_reload(self) -> None:
        for kind in ("job", "metrics", "validation", "samples", "events", "rescorings", "alarms"):
            self.refresh_kind(kind)

    def action_rescore(self) -> None:
        """Pick a grader (the daemon's grader files, an example, a path), then re-score the stored outputs."""
        async def pick() -> None:
            from rft_tui.screens.grader_picker import GraderPickerScreen

            files = list((await self.app.client.list_grader_files()).data)
            self.app.push_screen(GraderPickerScreen(f"Re-score {self.job_id} with…", files), self.rescore)

        self.run_worker(pick(), name="grader files", group="rescore-pick", exit_on_error=False)

    def rescore(self, pick: RescorePick | None) -> None:
        if pick is None:
            return
        what = "validation outputs and training samples" if pick.samples else "validation outputs"
        self.notify(f"Re-scoring the stored {what} with {pick.choice}…", timeout=4)

        async def call() -> None:
            from rft_tui.screens.grader_picker import load_choice

            grader = await load_choice(self.app.client, pick.choice)
            result = await self.app.client.rescore(self.job_id, api.RescoreRequest(grader=grader,
                                                                                   samples=pick.samples))
            self.post_message(m.RescoreDone(self.job_id, result))

        self.run_worker(call(), name="re-score", group="rescore", exit_on_error=False)

    def action_cycle_scores(self) -> None:
        order: list[str | None] = [None, *self.rescorings]
        now = order.index(self.scores) if self.scores in order else 0
        self._show_scores(order[(now + 1) % len(order)])

    def _show_scores(self, name: str | None) -> None:
        self.scores = name
        self.selected_step = None
        self.notify("Validation: " + (f"re-scoring {name}" if name else "original scores"), timeout=2)
        self.refresh_kind("validation")
        self.refresh_bindings()

    def palette_commands(self) -> Iterable[SystemCommand]:
        for t in TABS:
            yield SystemCommand(f"Tab: {t}", f"Show the {t} tab", lambda t=t: self.action_show_tab(t))
        job = self.view.job
        if job is not None and not job.status.is_terminal():
            yield SystemCommand("Cancel job", f"Cancel {job.id}", self.action_cancel)
        if job is not None and job.status in PAUSABLE:
            yield SystemCommand("Pause/resume job", f"Pause or resume {job.id}", self.action_pause)
        if job is not None:
            yield SystemCommand("Duplicate job", "New job with these settings", self.action_duplicate)
        if self.view.checkpoints:
            yield SystemCommand("Export checkpoint", "Export the highlighted checkpoint", self.action_export)
        for f in CHANGE_FILTERS:
            yield SystemCommand(f"Validation: show {f}", f"Only {f} validation rows",
                                lambda f=f: self._set_filter(f))
        if self.view.validation_steps:
            yield SystemCommand("Re-score with…", "Grade the stored validation outputs with another grader",
                                self.action_rescore)

    def _set_filter(self, change_filter: str) -> None:
        self.change_filter = change_filter
        self.action_show_tab("validation")
        self._render_validation(self.view)


def compare_text(c: api.ValidationCompare | None, scores: str | None) -> str:
    """The Validation tab's header: `vs base: +0.255 [0.21, 0.30]  p<0.001  89↑ 11↓`, then each sub-grader."""
    label = f"re-scoring {scores} · " if scores else ""
    if c is None:
        return f"{label}one validation step so far: nothing to compare" if scores else ""
    what = "base" if c.base_step == 0 else f"step {c.base_step}"
    line = f"{label}vs {what}: {c.headline()}"
    if len(c.per_grader) > 1:
        line += "\n" + "  ".join(f"{name} {g.base_mean:.2f}→{g.mean:.2f} {api.format_p_value(g.p_value)}"
                                  for name, g in c.per_grader.items()
                                  if g.base_mean is not None and g.mean is not None)
    return line


def _page_means(page: api.ValidationPage) -> tuple[float, dict[str, float]]:
    rewards = [r.reward for r in page.data]
    mean = sum(rewards) / len(rewards) if rewards else 0.0
    subs: dict[str, list[float]] = {}
    for r in page.data:
        for k, v in r.sub_rewards.items():
            if v is not None:
                subs.setdefault(k, []).append(v)
    return mean, {k: sum(v) / len(v) for k, v in subs.items()}
