"""The trajectory view: an agent-RFT episode turn by turn (Samples and Validation tabs, `enter` on a row).

Each turn is its own block: the model's turns with their tool calls highlighted (name, arguments, the result
or the error, latency), the tool results the model was shown, and a header with the reward and why the
episode ended. A validation row shows the base model's episode and the selected step's, one after the other.
`escape` closes; the blocks scroll (arrow keys, page keys, mouse).
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from daemon import api
from rft_tui.widgets.trajectory import Episode, header_text, is_error_result, turn_text


class TrajectoryScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    TrajectoryScreen { align: center middle; }
    TrajectoryScreen > VerticalScroll { width: 94%; height: 92%; border: thick $accent; background: $surface;
                                        padding: 0 1; }
    TrajectoryScreen .episode-header { margin-top: 1; padding: 0 1; background: $boost; }
    TrajectoryScreen .turn { margin: 1 0 0 2; padding: 0 1; height: auto; }
    TrajectoryScreen .assistant { border-left: thick $primary; }
    TrajectoryScreen .tool { border-left: thick $success; }
    TrajectoryScreen .tool-error { border-left: thick $error; }
    TrajectoryScreen .calls { border-left: thick $warning; }
    """
    BINDINGS = [Binding("escape,q,enter", "close", "Close", id="trajectory.close", tooltip="Close this view")]

    def __init__(self, title: str, episodes: Sequence[Episode]) -> None:
        super().__init__()
        self.title_text = title
        self.episodes = list(episodes)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="trajectory") as scroll:
            scroll.border_title = self.title_text
            scroll.border_subtitle = "esc close"
            for e, episode in enumerate(self.episodes):
                yield Static(header_text(episode), classes="episode-header", id=f"episode-{e}")
                model_turns = 0
                for turn in episode.turns:
                    model_turns += turn.role == "assistant"
                    yield Static(turn_text(turn, model_turns), classes=f"turn {self._kind(turn)}")

    @staticmethod
    def _kind(turn: api.TrajectoryTurn) -> str:
        """The block's style: a model turn (with or without calls), a tool result, or a tool error."""
        if turn.role == "tool":
            return "tool-error" if is_error_result(turn) else "tool"
        return "calls" if turn.tool_calls else "assistant"

    def action_close(self) -> None:
        self.dismiss(None)
