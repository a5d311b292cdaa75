"""The one frozen snapshot a Job screen shows, and how the reward chart's series derive from it."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from daemon import api, metrics
from rft_tui.widgets.reward_chart import Series, ema

TOOL_CALLS_COLOR = "bright_yellow"
GRADER_COLORS = ("magenta", "bright_red", "bright_yellow", "bright_blue", "cyan", "bright_magenta")


@dataclass(frozen=True)
class JobView:
    """Everything the Job screen knows about one job; replaced wholesale (never mutated) by handlers."""

    job: api.FineTuningJob | None = None
    checkpoints: tuple[api.JobCheckpoint, ...] = ()
    metrics: tuple[api.MetricStep, ...] = ()
    valid_curve: tuple[tuple[int, float, dict[str, float]], ...] = ()
    validation_steps: tuple[int, ...] = ()
    base: api.ValidationPage | None = None
    selected: api.ValidationPage | None = None
    compare: api.ValidationCompare | None = None
    samples: tuple[api.TrainingSample, ...] = ()
    events: tuple[api.JobEvent, ...] = ()
    log: api.JobLog | None = None
    alarms: tuple[api.JobAlarm, ...] = ()

    @property
    def last_step(self) -> int | None:
        return self.metrics[-1].step if self.metrics else None


def grader_names(view: JobView) -> list[str]:
    """Per-grader train reward keys (`rewards/<name>/mean`, TRL's names) and validation sub-rewards."""
    names = {name for m in view.metrics[-1:] for k in m.values if (name := metrics.grader_of(k)) is not None}
    for _, _, subs in view.valid_curve:
        names.update(subs)
    return sorted(names)


def chart_series(view: JobView, raw: bool = True, smoothed: bool = True, per_grader: bool = True) -> list[Series]:
    train = [(float(m.step), value) for m in view.metrics if (value := m.values.get(metrics.TRAIN_REWARD)) is not None]
    out: list[Series] = []
    if raw:
        out.append(Series("train", "blue" if smoothed else "bright_cyan", tuple(train)))
    if smoothed and train:
        sm = ema([y for _, y in train])
        out.append(Series("train (smoothed)", "bright_cyan",
                          tuple((x, y) for (x, _), y in zip(train, sm, strict=True))))
    if view.valid_curve:
        out.append(Series("valid", "bright_green", tuple((float(s), r) for s, r, _ in view.valid_curve)))
    calls = [(float(m.step), v) for m in view.metrics if (v := m.values.get(metrics.TOOL_CALL_RATE)) is not None]
    if calls:  # agent RFT: the share of episodes that call a tool, on the reward's 0..1 scale
        ys = ema([y for _, y in calls]) if smoothed else [y for _, y in calls]
        out.append(Series("tool calls", TOOL_CALLS_COLOR, tuple((x, y) for (x, _), y in zip(calls, ys, strict=True))))
    if per_grader:
        for i, name in enumerate(grader_names(view)):
            color = GRADER_COLORS[i % len(GRADER_COLORS)]
            key = metrics.grader_reward(name)
            pts = [(float(m.step), value) for m in view.metrics if (value := m.values.get(key)) is not None]
            if pts:
                ys = ema([y for _, y in pts]) if smoothed else [y for _, y in pts]
                out.append(Series(f"train:{name}", color, tuple((x, y) for (x, _), y in zip(pts, ys, strict=True))))
            vpts = [(float(s), subs[name]) for s, _, subs in view.valid_curve if subs.get(name) is not None]
            if vpts:
                out.append(Series(f"valid:{name}", color, tuple(vpts)))
    return out


def tool_use_text(view: JobView) -> Text | None:
    """`train 95% of episodes (step 50) · valid 41% → 100% (step 50)`; None for a job whose episodes never had
    tools (no tool metrics and no validation episodes)."""
    last = next((m for m in reversed(view.metrics) if m.values.get(metrics.TOOL_CALL_RATE) is not None), None)
    base = view.base.summary.get("tool_call_rate") if view.base else None
    selected = view.selected.summary.get("tool_call_rate") if view.selected else None
    if last is None and base is None and selected is None:
        return None
    text = Text()
    if last is not None:
        text.append("train ", "bold")
        text.append(f"{last.values[metrics.TOOL_CALL_RATE]:.0%} of episodes (step {last.step})")
    if base is not None or selected is not None:
        if last is not None:
            text.append(" · ")
        text.append("valid ", "bold")
        step = view.selected.step if view.selected else None
        if step is None or (view.base is not None and step == view.base.step):
            text.append(f"{'-' if base is None else f'{base:.0%}'} (base model)")
        else:
            text.append(f"{'-' if base is None else f'{base:.0%}'} → {'-' if selected is None else f'{selected:.0%}'}"
                        f" (step {step})")
    return text
