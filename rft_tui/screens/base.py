"""What every rft-tui screen shares: worker errors become one notification, not a traceback."""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker, WorkerState

from rft_tui.messages import WorkerFailed


def error_text(error: BaseException | None) -> str:
    """One line for a person: the daemon's message (with the parameter it names), else the exception."""
    if error is None:
        return "unknown error"
    param = getattr(error, "param", None)
    text = str(error) or type(error).__name__
    return f"{text} [{param}]" if param else text


class RftScreen(Screen[None]):
    """Base screen: reports a failed worker (workers run with exit_on_error=False) through the app."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.app.post_message(WorkerFailed(event.worker.name or event.worker.group or "request",
                                               error_text(event.worker.error)))
