"""The Textual app: screen stack, global keys, the one `/v1/stream` reader, help and command palette.

Contract for screens (Jobs, Job, Files, Graders, New job — whoever writes them):

- The daemon client is `self.app.client` (a `daemon.client.AsyncClient`). Call it only from workers
  (`@work(exclusive=True, group=..., exit_on_error=False)`) that `post_message` what they fetched;
  handlers change state. Widgets never do I/O. A worker error is shown by the app (one notification).
- Every screen receives `rft_tui.messages.DaemonEvent` for each stream event (job status, metrics,
  files, graders) while it is on the stack; handle it with `on_daemon_event` or ignore it.
- Screens are constructed with no required arguments except: `JobScreen(job_id)`,
  `NewJobScreen(prefill: api.FineTuningJob | None = None)` (duplicate-as-new-job).
  `FilesScreen()` and `GradersScreen()` take none.
- A screen may define `palette_commands() -> Iterable[textual.app.SystemCommand]`: the command palette
  (`ctrl+p`) offers them while that screen is active.
- `self.app.clock()` is "now" (seconds since the epoch); use it instead of `time.time()` so
  snapshot tests can pin it.
- Global keys: `q` quit, `escape` back, `f1`/`?` help (built from the active bindings), `ctrl+p`
  palette, `ctrl+t` theme, `F` files, `G` graders, `n` new job (on the Jobs screen).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from daemon import api
from daemon.client import AsyncClient
from rft_tui.doctor_text import doctor_text
from rft_tui.messages import DaemonEvent, DoctorReady, StreamState, WorkerFailed
from rft_tui.screens.base import error_text

STREAM_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


#: the status a control action ends in (a resume counts once the job runs again, not while it queues)
ACTION_TARGET = {"pause": api.JobStatus.paused, "cancel": api.JobStatus.cancelled, "resume": api.JobStatus.running}


class RftApp(App[None]):
    """rft-tui: jobs, live training metrics, validation, files and graders over the daemon API."""

    CSS_PATH = "app.tcss"
    TITLE = "rft-tui"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Quit rft-tui (jobs keep running in the daemon)"),
        Binding("escape", "back", "Back", id="app.back", tooltip="Go back to the previous screen"),
        Binding("f1,question_mark", "help", "Help", id="app.help", key_display="?",
                tooltip="List the keys of this screen"),
        Binding("ctrl+t", "change_theme", "Theme", id="app.theme", show=False, tooltip="Pick a colour theme"),
        Binding("F", "open_files", "Files", id="app.files", tooltip="Browse and validate dataset files"),
        Binding("G", "open_graders", "Graders", id="app.graders", tooltip="Edit and try graders"),
    ]

    def __init__(self, client: AsyncClient, *, clock: Callable[[], float] = time.time,
                 open_job: str | None = None, stream: bool = True, endpoint_label: str = "") -> None:
        super().__init__()
        self.client = client
        self.clock = clock
        self.open_job = open_job
        self.stream_enabled = stream
        self.stream_connected = False
        self._stream_dropped = False
        self.sub_title = endpoint_label
        self.awaiting: dict[str, str] = {}  # job id -> the control action whose outcome the user waits for

    # ------------------------------------------------------------------ screens

    def get_default_screen(self) -> Screen:
        from rft_tui.screens.jobs import JobsScreen

        return JobsScreen()

    def on_mount(self) -> None:
        if self.stream_enabled:
            self.read_stream()
        if self.open_job:
            self.action_open_job(self.open_job)

    def action_open_job(self, job_id: str) -> None:
        from rft_tui.screens.job import JobScreen

        self.push_screen(JobScreen(job_id))

    def action_open_files(self) -> None:
        try:
            from rft_tui.screens.files import FilesScreen
        except ImportError as e:
            self.notify(f"This screen is not available: {e}", severity="error")
            return
        self.push_screen(FilesScreen())

    def action_open_graders(self) -> None:
        try:
            from rft_tui.screens.graders import GradersScreen
        except ImportError as e:
            self.notify(f"This screen is not available: {e}", severity="error")
            return
        self.push_screen(GradersScreen())

    def action_new_job(self, prefill: api.FineTuningJob | None = None) -> None:
        try:
            from rft_tui.screens.new_job import NewJobScreen
        except ImportError as e:
            self.notify(f"The new-job form is not available: {e}", severity="error")
            return
        self.push_screen(NewJobScreen(prefill=prefill))

    async def action_back(self) -> None:
        """Pop the current screen; on the last one, do nothing (check_action also hides the key there)."""
        if len(self.screen_stack) > 1:
            self.pop_screen()

    def action_help(self) -> None:
        from rft_tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen.for_screen(self.screen))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back":
            return len(self.screen_stack) > 1
        return True

    # ------------------------------------------------------------------ palette

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Jobs", "Go to the jobs list", self._go_home)
        yield SystemCommand("New job", "Open the new-job form", self.action_new_job)
        yield SystemCommand("Files", "Browse and validate dataset files", self.action_open_files)
        yield SystemCommand("Graders", "Edit and try graders", self.action_open_graders)
        yield SystemCommand("Help", "Keys of this screen", self.action_help)
        yield SystemCommand("Doctor", "Is the daemon's machine ready to train? (torch, CUDA, GPUs, vLLM, sandbox, "
                            "disk, HF cache)", self.action_doctor)
        extra = getattr(screen, "palette_commands", None)
        if callable(extra):
            yield from extra()

    def action_doctor(self) -> None:
        self.notify("Running doctor on the daemon's machine…", timeout=3)
        self.run_doctor()

    @work(exclusive=True, group="doctor", exit_on_error=False)
    async def run_doctor(self) -> None:
        self.post_message(DoctorReady(await self.client.doctor()))

    @on(DoctorReady)
    def _doctor_ready(self, message: DoctorReady) -> None:
        from rft_tui.screens.text_modal import TextModal

        self.push_screen(TextModal("Doctor", doctor_text(message.report)))

    def _go_home(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()

    # ------------------------------------------------------------------ stream

    @work(exclusive=True, group="stream", exit_on_error=False)
    async def read_stream(self) -> None:
        """Forward `/v1/stream` events as messages; reconnect with backoff when it drops."""
        failures = 0
        while True:
            try:
                health = await self.client.health()
                if health.sandbox and health.sandbox != "bubblewrap" and "SANDBOX" not in self.sub_title:
                    mode = health.sandbox.split(":")[0].upper()  # OFF | UNAVAILABLE
                    self.sub_title = f"{self.sub_title} · PYTHON GRADER SANDBOX {mode}".lstrip(" ·")
                failures = 0
                self.post_message(StreamState(True))
                async for event in self.client.stream():
                    self.post_message(DaemonEvent(event))
                detail = "the daemon closed the stream"
            except Exception as e:  # noqa: BLE001 - any failure means: reconnect later
                detail = str(e) or type(e).__name__
            delay = STREAM_BACKOFF_S[min(failures, len(STREAM_BACKOFF_S) - 1)]
            failures += 1
            self.post_message(StreamState(False, f"{detail}; retrying in {delay:.1f}s"))
            await asyncio.sleep(delay)

    @on(DaemonEvent)
    def _forward_event(self, message: DaemonEvent) -> None:
        if message.event.type is api.StreamEventType.heartbeat:
            return
        if message.event.type is api.StreamEventType.job_alarm:
            self._notify_alarm(message.event)
        if message.event.type is api.StreamEventType.job_status and message.event.job_id in self.awaiting:
            self._settle_action(message.event.job_id, message.event.status)
        for screen in self.screen_stack:
            screen.post_message(DaemonEvent(message.event))

    # ------------------------------------------------------------------ pause / resume / cancel outcomes

    def control_requested(self, action: str, job: object) -> None:
        """A control request was accepted: say so, and say again when the job gets there (pausing waits for a
        checkpoint at the next step boundary; a resumed job may queue for a slot first)."""
        if not isinstance(job, api.FineTuningJob):
            return
        if self._reached(action, job.status) or job.status.is_terminal():
            self._settle_action(job.id, job.status, action)
            return
        self.awaiting[job.id] = action
        self.notify(f"{action.capitalize()} requested for {job.id}; waiting for the job to be "
                    f"{ACTION_TARGET[action].value}", timeout=4)

    @staticmethod
    def _reached(action: str, status: api.JobStatus | None) -> bool:
        return status is ACTION_TARGET.get(action)

    def _settle_action(self, job_id: str, status: api.JobStatus | None, action: str | None = None) -> None:
        action = action or self.awaiting.get(job_id)
        if action is None or status is None:
            return
        if self._reached(action, status):
            self.awaiting.pop(job_id, None)
            done = {"pause": "paused (checkpointed; resume continues from there)", "cancel": "cancelled",
                    "resume": "running again"}[action]
            self.notify(f"{job_id} {done}", title=f"{action.capitalize()} done", timeout=5)
        elif status.is_terminal():
            self.awaiting.pop(job_id, None)
            self.notify(f"{job_id} ended {status.value} before it was {ACTION_TARGET[action].value}",
                        title=f"{action.capitalize()}", severity="error" if status is api.JobStatus.failed
                        else "warning", timeout=8)

    def _notify_alarm(self, event: api.StreamEvent) -> None:
        """A training-health alarm fired (docs/health.md): say so whatever screen is open."""
        data = event.data or {}
        name = str(data.get("alarm", "alarm")) + (f" ({data['grader']})" if data.get("grader") else "")
        action = {"pause": " · pausing", "cancel": " · cancelling", "fail": " · failing"}.get(str(data.get("action")),
                                                                                           "")
        self.notify(f"{data.get('message', '')}", title=f"Alarm {name} · {event.job_id} · step {event.step}{action}",
                    severity="error" if data.get("severity") == "critical" else "warning", timeout=10)

    @on(StreamState)
    def _stream_state(self, message: StreamState) -> None:
        was = self.stream_connected
        self.stream_connected = message.connected
        if was and not message.connected:
            self.notify(f"Lost the daemon's live stream: {message.detail}", severity="warning", timeout=4)
        elif message.connected and self._stream_dropped:
            self.notify("Reconnected to the daemon", timeout=3)
            for screen in self.screen_stack:  # catch up on what happened while the stream was down
                reload = getattr(screen, "action_reload", None)
                if callable(reload):
                    reload()
        self._stream_dropped = self._stream_dropped or (was and not message.connected)
        if message.connected:
            self._stream_dropped = False

    # ------------------------------------------------------------------ errors

    @on(WorkerFailed)
    def _worker_failed(self, message: WorkerFailed) -> None:
        self.notify(f"{message.what}: {message.error}", severity="error", timeout=6)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker errors are reported (workers run with exit_on_error=False)."""
        if event.state is WorkerState.ERROR and event.worker.group != "stream":
            error = event.worker.error
            self.notify(f"{event.worker.name or 'request'} failed: {error_text(error)}", severity="error", timeout=6)

