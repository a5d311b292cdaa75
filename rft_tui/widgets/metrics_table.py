"""The metrics table of a job: one row per training step, appended as steps arrive (never reloaded)."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

from daemon import api, metrics

MAX_COLUMNS = 9


def column_keys(sample: dict[str, float | None]) -> list[str]:
    """The metrics worth a column: the registry's default columns in order, then per-grader rewards, then the rest."""
    return metrics.column_keys(sample, MAX_COLUMNS)


class MetricsTable(DataTable[str]):
    """Columns are fixed by the first step seen; later steps only add rows (and follow the tail)."""

    DEFAULT_CSS = "MetricsTable { height: 1fr; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.keys: list[str] = []
        self.last_step: int | None = None

    def append_steps(self, steps: Sequence[api.MetricStep]) -> int:
        """Add the steps after `last_step`; returns how many rows were added."""
        new = [s for s in steps if self.last_step is None or s.step > self.last_step]
        if not new:
            return 0
        if not self.keys:
            self.keys = column_keys(new[0].values)
            self.add_column("step", key="step")
            for k in self.keys:
                self.add_column(metrics.label(k), key=k)
        following = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        for s in new:
            self.add_row(str(s.step), *(metrics.format_value(k, s.values.get(k)) for k in self.keys), key=str(s.step))
        self.last_step = new[-1].step
        if following:
            self.move_cursor(row=self.row_count - 1, animate=False)
        return len(new)
