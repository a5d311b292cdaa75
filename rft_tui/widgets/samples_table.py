"""Recent training completions with their reward and sub-rewards; `enter` shows one in full (an agent-RFT
episode, marked ⚙ when it called tools, in the trajectory view)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

from daemon import api
from daemon.text import clip
from rft_tui.widgets.trajectory import tool_mark

MAX_ROWS = 500


def sub_rewards_text(sub: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.2f}" for k, v in sub.items()) if sub else "-"


class SamplesTable(DataTable[str]):
    """Oldest at the top, newest appended at the bottom (the tail is followed)."""

    DEFAULT_CSS = "SamplesTable { height: 1fr; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.samples: dict[str, api.TrainingSample] = {}
        self.last_id = 0

    def on_mount(self) -> None:
        for key, label in (("step", "Step"), ("reward", "Reward"), ("sub", "Sub-rewards"), ("prompt", "Prompt"),
                           ("completion", "Completion")):
            self.add_column(label, key=key)

    def append_samples(self, samples: Sequence[api.TrainingSample]) -> int:
        new = sorted((s for s in samples if s.id > self.last_id), key=lambda s: s.id)
        following = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        for s in new:
            key = str(s.id)
            self.samples[key] = s
            self.add_row(str(s.step), f"{s.reward:.3f}", clip(sub_rewards_text(s.sub_rewards), 24, one_line=True),
                         clip(s.prompt, 24, one_line=True), clip(tool_mark(s.tool_calls) + s.completion, 40,
                                                                  one_line=True),
                         key=key)
        if new:
            self.last_id = new[-1].id
        while self.row_count > MAX_ROWS:
            first = next(iter(self.samples))
            self.remove_row(first)
            del self.samples[first]
        if new and following:
            self.move_cursor(row=self.row_count - 1, animate=False)
        return len(new)
