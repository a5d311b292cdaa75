"""The Job screen's Health tab: each health signal as a sparkline against its alarm bound, the highlighted one
as a chart with its threshold line, and the alarms the job raised (the step each fired, cleared or not).

Bounds come from the job's guardrails through daemon.health (the worker's own rules), so what the tab draws is
what the alarms compare. Widgets never do I/O: the screen hands in metric steps and alarms; tables only gain
rows or change cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from daemon import api, health, metrics
from rft_tui.widgets.reward_chart import RewardChart, Series

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24


@dataclass(frozen=True)
class Signal:
    """One row: a metric key, the alarm watching it (if any), and whether high or low values are bad."""

    key: str
    alarm: str | None = None
    bad_when: str = "above"  # "above" | "below" the bound


BASE_SIGNALS: tuple[Signal, ...] = (
    Signal(metrics.FRAC_REWARD_ZERO_STD, "zero_signal"),
    Signal(metrics.TRAIN_VALID_GAP, "train_valid_gap"),
    Signal(metrics.CLIPPED_RATIO, "length_clipped"),
    Signal(metrics.ENTROPY, "entropy_collapse", "below"),
    Signal(metrics.KL),
    Signal(metrics.TRAIN_REWARD),
    Signal("reward_std"),
    Signal("completions/mean_length"),
    Signal("completions/max_length"),
    Signal(metrics.STEP_WALL_S),
)


def signals_for(steps: Sequence[api.MetricStep]) -> list[Signal]:
    """The base signals the job records, then per-grader error rate and p95 latency."""
    seen = {k for m in steps[-5:] for k, v in m.values.items() if v is not None}
    graders = sorted({g for k in seen if (g := metrics.grader_of_health(k)) is not None})
    out = [s for s in BASE_SIGNALS if s.key in seen]
    for g in graders:
        out.append(Signal(metrics.grader_error_rate(g), "grader_errors"))
        out.append(Signal(metrics.grader_latency_p95(g), "grader_slow"))
    return out


def bound_of(signal: Signal, steps: Sequence[api.MetricStep], job: api.FineTuningJob | None) -> float | None:
    """The value the signal's alarm compares with, for this job (its guardrails and grader limits)."""
    if signal.alarm is None:
        return None
    snapshot = job.snapshot if job else None
    s = health.settings(snapshot.guardrails if snapshot else None)[signal.alarm]
    if not s.enabled:
        return None
    if signal.alarm == "entropy_collapse":
        start = [v for m in steps[:s.window] if (v := m.values.get(metrics.ENTROPY)) is not None]
        return s.threshold * sum(start) / len(start) if len(start) >= s.window else None
    if signal.alarm == "grader_slow":
        grader = metrics.grader_of_health(signal.key)
        limit = health.grader_time_limits(snapshot.grader).get(grader or "") if snapshot else None
        return None if limit is None else s.threshold * limit
    return s.threshold


def values_of(key: str, steps: Sequence[api.MetricStep]) -> list[tuple[float, float]]:
    return [(float(m.step), v) for m in steps if (v := m.values.get(key)) is not None]


def sparkline(values: Sequence[float], bound: float | None, bad_when: str = "above",
              width: int = SPARK_WIDTH) -> Text:
    """The last `width` values as block bars on a scale that includes the bound; bars past the bound in red."""
    tail = list(values)[-width:]
    if not tail:
        return Text("")
    lo = min(0.0, *tail)
    hi = max(*tail, bound if bound is not None else tail[0], lo + 1e-9)
    text = Text()
    for v in tail:
        level = round((v - lo) / (hi - lo) * (len(SPARK) - 1))
        bad = bound is not None and (v > bound if bad_when == "above" else v < bound)
        text.append(SPARK[max(0, min(len(SPARK) - 1, level))], style="red" if bad else "green")
    return text


def alarm_cells(a: api.JobAlarm) -> tuple[str | Text, ...]:
    name = a.name + (f" ({a.grader})" if a.grader else "")
    sev = Text(a.severity, style="bold red" if a.severity == "critical" else "yellow")
    state = "open" if a.cleared_at is None else f"cleared @{a.cleared_step}"
    return (str(a.step if a.step is not None else "-"), name, sev, _num(a.value), _num(a.threshold), a.action, state)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


class HealthPanel(Vertical):
    """Signals table (sparkline, latest value, bound), the highlighted signal's chart, the alarms table."""

    DEFAULT_CSS = """
    HealthPanel #health-signals { height: 8; }
    HealthPanel #health-chart { height: 6; min-height: 5; }
    HealthPanel #health-alarms-title { height: 1; text-style: bold; padding: 0 1; }
    HealthPanel #health-alarms { height: 1fr; min-height: 3; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.steps: tuple[api.MetricStep, ...] = ()
        self.job: api.FineTuningJob | None = None
        self.signals: dict[str, Signal] = {}
        self._alarm_state: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield DataTable(id="health-signals", cursor_type="row", zebra_stripes=True)
        yield RewardChart(id="health-chart")
        yield Static("Alarms (docs/health.md): none yet", id="health-alarms-title")
        yield DataTable(id="health-alarms", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#health-signals", DataTable)
        for key, label in (("signal", "Signal"), ("spark", "Last steps"), ("now", "Now"), ("bound", "Bound")):
            table.add_column(label, key=key)
        alarms = self.query_one("#health-alarms", DataTable)
        for key, label in (("step", "Step"), ("alarm", "Alarm"), ("severity", "Severity"), ("value", "Value"),
                           ("bound", "Bound"), ("action", "Action"), ("state", "State")):
            alarms.add_column(label, key=key)
        self.query_one(RewardChart).empty_message = "No health signals yet."

    # ------------------------------------------------------------------ data in

    def show(self, steps: Sequence[api.MetricStep], job: api.FineTuningJob | None) -> None:
        """New metric steps (or a new job state): update each signal's row in place, add new signals' rows."""
        self.steps, self.job = tuple(steps), job
        table = self.query_one("#health-signals", DataTable)
        for sig in signals_for(self.steps):
            bound = bound_of(sig, self.steps, job)
            series = [v for _, v in values_of(sig.key, self.steps)]
            cells = (metrics.label(sig.key), sparkline(series, bound, sig.bad_when),
                     metrics.format_value(sig.key, series[-1] if series else None),
                     "-" if bound is None else metrics.format_value(sig.key, bound))
            if sig.key not in self.signals:
                self.signals[sig.key] = sig
                table.add_row(*cells, key=sig.key)
            else:
                for col, value in zip(("signal", "spark", "now", "bound"), cells, strict=True):
                    table.update_cell(sig.key, col, value)
        self._chart()

    def show_alarms(self, alarms: Sequence[api.JobAlarm]) -> None:
        """Add alarms not shown yet, update the state of those that cleared since."""
        table = self.query_one("#health-alarms", DataTable)
        for a in alarms:
            cells = alarm_cells(a)
            if a.id not in self._alarm_state:
                table.add_row(*cells, key=a.id)
            elif self._alarm_state[a.id] != cells[-1]:
                table.update_cell(a.id, "state", cells[-1])
            self._alarm_state[a.id] = str(cells[-1])
        open_ = sum(1 for a in alarms if a.cleared_at is None)
        self.query_one("#health-alarms-title", Static).update(
            f"Alarms (docs/health.md): {len(alarms)} raised, {open_} open" if alarms else
            "Alarms (docs/health.md): none yet")

    # ------------------------------------------------------------------ chart

    @property
    def highlighted(self) -> Signal | None:
        table = self.query_one("#health-signals", DataTable)
        if not table.row_count:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - cursor outside the rows
            return None
        return self.signals.get(str(key))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "health-signals":
            self._chart()

    def _chart(self) -> None:
        sig = self.highlighted
        chart = self.query_one(RewardChart)
        if sig is None:
            chart.set_series([])
            return
        pts = values_of(sig.key, self.steps)
        series = [Series(metrics.label(sig.key), "bright_cyan", tuple(pts))]
        bound = bound_of(sig, self.steps, self.job)
        if bound is not None and pts:
            series.append(Series("bound", "red",
                                 ((pts[0][0], bound), (pts[-1][0], bound))))
        if sig.alarm == "train_valid_gap" and pts:
            s = health.settings(self.job.snapshot.guardrails if self.job and self.job.snapshot else None)[sig.alarm]
            if s.critical is not None:
                series.append(Series("critical", "bright_red",
                                     ((pts[0][0], s.critical), (pts[-1][0], s.critical))))
        chart.legend_key = sig.key
        chart.set_series(series)
