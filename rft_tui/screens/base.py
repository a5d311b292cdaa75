"""What every rft-tui screen shares: worker errors become one notification, not a traceback."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from rft_tui.messages import WorkerFailed

if TYPE_CHECKING:
    from textual import getters

    from rft_tui.app import RftApp


def error_text(error: BaseException | None) -> str:
    """One line for a person: the daemon's message (with the parameter it names), else the exception."""
    if error is None:
        return "unknown error"
    param = getattr(error, "param", None)
    text = str(error) or type(error).__name__
    return f"{text} [{param}]" if param else text


class RftScreen(Screen[None]):
    """Base screen: reports a failed worker (workers run with exit_on_error=False) through the app,
    and runs fetches so that a burst of requests for the same thing becomes at most one more fetch."""

    # The app's help key, bound again here so the footer lists it first among the screen's keys: at 80 columns
    # (SSH) the app's own keys come last and are cut off, and `?` is the one a new user needs to find.
    BINDINGS = [Binding("f1,question_mark", "app.help", "Help", id="screen.help", key_display="?",
                        tooltip="List the keys of this screen")]

    if TYPE_CHECKING:  # `self.app` is an RftApp (its client, clock); Textual types it as any App
        app = getters.app(RftApp)

    @dataclass
    class FetchDone(Message):
        """A fetch of one kind finished (so a request that came meanwhile can run)."""

        kind: str

    def __init__(self) -> None:
        super().__init__()
        self._busy: set[str] = set()
        self._again: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}

    def fetch(self, kind: str, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `make()` in a worker unless a fetch of `kind` is in flight; then run it once afterwards."""
        if kind in self._busy:
            self._again[kind] = make
            return
        self._busy.add(kind)

        async def run() -> None:
            try:
                await make()
            finally:
                self.post_message(self.FetchDone(kind))

        self.run_worker(run(), name=f"fetch {kind}", group=f"fetch:{kind}", exit_on_error=False)

    @on(FetchDone)
    def _fetch_done(self, message: FetchDone) -> None:
        self._busy.discard(message.kind)
        again = self._again.pop(message.kind, None)
        if again is not None:
            self.fetch(message.kind, again)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.app.post_message(WorkerFailed(event.worker.name or event.worker.group or "request",
                                               error_text(event.worker.error)))
