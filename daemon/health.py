"""Training health: the alarms a job watches for, their documented defaults, and the engine that raises them.

A run that looks fine and is not (reward climbing while validation falls, every group scoring the same, a
grader erroring silently, a frozen step) costs RFT users the most time; this module turns the per-step health
signals (daemon/metrics.py, kind "health") into alarms that fire once per episode and clear on recovery.
`ALARMS` is the table docs/health.md explains, with where each default comes from. Pure Python (standard
library + daemon.api): the worker, the fake test worker and the scheduler share it, and it is unit-testable
without torch. `stalled` is the scheduler's (the worker cannot notice its own hang); the rest run in the worker.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from daemon import api, metrics

Severity = Literal["warning", "critical"]
#: The train reward is smoothed over this many steps before the train-validation gap is taken.
GAP_SMOOTHING_STEPS = 10


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm: what it watches, its default bound and window, and where that default comes from."""

    name: str
    severity: Severity
    threshold: float
    window: int  # steps looked at (zero_signal: groups; 1 = the latest value only)
    signal: str  # the metric key (or family) it watches
    condition: str  # the rule in words, with {threshold} / {window} / {critical}
    source: str
    critical: float | None = None  # a second, critical bound (train_valid_gap)
    per_grader: bool = False


ALARMS: tuple[AlarmSpec, ...] = (
    AlarmSpec("zero_signal", "critical", 0.5, 20, metrics.FRAC_REWARD_ZERO_STD,
              "more than {threshold:.0%} of the last {window} groups had zero reward spread",
              "DAPO (Yu et al. 2025) drops zero-spread groups as carrying no gradient; rewardspy alerts at 50 %"),
    AlarmSpec("train_valid_gap", "warning", 0.05, GAP_SMOOTHING_STEPS, metrics.TRAIN_VALID_GAP,
              "smoothed train reward minus latest validation reward above {threshold:.2f} (critical above "
              "{critical:.2f})",
              "Azure OpenAI RFT guidance on reward hacking: a train/validation gap over 0.05 warns, over 0.10 is "
              "critical", critical=0.10),
    AlarmSpec("valid_regression", "warning", 0.05, 1, metrics.VALID_REWARD_MEAN,
              "validation reward more than {threshold:.2f} below the best checkpoint's",
              "issue 11; the same 0.05 scale as the gap warning (about one row in 20 on a small validation set)"),
    AlarmSpec("reward_saturated", "warning", 0.98, 20, metrics.TRAIN_REWARD,
              "train reward at or above {threshold:.2f} for {window} steps with no new best validation reward",
              "issue 11: reward hacking or a too-easy task (TRL PR #5790 shows train reward at 1.0 while the task "
              "metric collapses)"),
    AlarmSpec("length_clipped", "warning", 0.30, 20, metrics.CLIPPED_RATIO,
              "more than {threshold:.0%} of completions cut at max_completion_length over {window} steps",
              "issue 11; DAPO's overlong-filtering motivation: truncated completions get misleading rewards"),
    AlarmSpec("entropy_collapse", "warning", 0.10, 20, metrics.ENTROPY,
              "entropy below {threshold:.0%} of its mean over the first {window} steps",
              "issue 11; entropy collapse in RL for LLMs (Cui et al. 2025, 'The Entropy Mechanism of RL for "
              "Reasoning LMs')"),
    AlarmSpec("grader_errors", "critical", 0.05, 20, "grader/{grader}/error_rate",
              "a grader's error rate over {threshold:.0%} in the last {window} steps",
              "issue 11: errors score 0 silently (verl PR #6673, verl-omni #366); 1 row in 20 is past noise",
              per_grader=True),
    AlarmSpec("grader_slow", "warning", 0.5, 1, "grader/{grader}/latency_p95_s",
              "a grader's p95 latency over {threshold:.0%} of its time limit",
              "issue 11: a grader near its time limit is about to time out (and score 0)", per_grader=True),
    AlarmSpec("non_finite", "critical", 0.0, 1, metrics.LOSS, "NaN or infinite loss or reward",
              "issue 11: a NaN never recovers; every later step is wasted"),
    AlarmSpec("tool_errors", "critical", 0.10, 10, metrics.TOOL_FAILURE_RATE,
              "more than {threshold:.0%} of tool calls failed because the tool did (HTTP error, timeout, "
              "unreachable, bad answer) over {window} steps",
              "issue 13: a failing tool endpoint feeds the model errors it learns to avoid or game; the model's "
              "own malformed calls are excluded (they are what RL teaches away); 1 call in 10 is an outage"),
    AlarmSpec("stalled", "critical", 10.0, 1, metrics.STEP_WALL_S,
              "no step for {threshold:g}x the median step time (and at least the stall floor, 300 s by default)",
              "issue 11 (trl#6796, ART#346: runs that freeze with no error); detected by the daemon"),
)
SPECS: dict[str, AlarmSpec] = {a.name: a for a in ALARMS}
assert tuple(SPECS) == api.ALARM_NAMES, "daemon.api.AlarmName and health.ALARMS must list the same alarms"


# ---------------------------------------------------------------------- settings


@dataclass(frozen=True)
class AlarmSettings:
    """One alarm's effective settings for a job (the spec with the job's overrides applied)."""

    spec: AlarmSpec
    enabled: bool
    severity: Severity
    threshold: float
    window: int
    critical: float | None


def settings(guardrails: api.Guardrails | None) -> dict[str, AlarmSettings]:
    """Every alarm's settings for a job: the defaults, with its `guardrails.alarms` overrides."""
    g = guardrails or api.Guardrails()
    out: dict[str, AlarmSettings] = {}
    for spec in ALARMS:
        o = g.alarms.get(spec.name)  # type: ignore[call-overload]
        out[spec.name] = AlarmSettings(
            spec, enabled=o.enabled if o else True, severity=(o.severity if o and o.severity else spec.severity),
            threshold=o.threshold if o and o.threshold is not None else spec.threshold,
            window=o.window if o and o.window is not None else spec.window,
            critical=o.critical if o and o.critical is not None else spec.critical)
    stalled = g.alarms.get("stalled")
    if stalled is None or stalled.threshold is None:  # the factor may be given either way; the override wins
        out["stalled"] = replace(out["stalled"], threshold=g.stall_factor)
    return out


#: Bounds a threshold must be within (name -> (low, high, what)); the rest only have to be finite.
_RANGES: dict[str, tuple[float, float, str]] = {
    "zero_signal": (0.0, 1.0, "a share of groups"), "train_valid_gap": (0.0, 1.0, "a reward difference"),
    "valid_regression": (0.0, 1.0, "a reward difference"), "reward_saturated": (0.0, 1.0, "a reward"),
    "length_clipped": (0.0, 1.0, "a share of completions"), "entropy_collapse": (0.0, 1.0, "a share of the start"),
    "grader_errors": (0.0, 1.0, "an error rate"), "grader_slow": (0.0, 1.0, "a share of the time limit"),
    "non_finite": (0.0, 0.0, "(none: the alarm has no threshold)"), "stalled": (1.0, math.inf, "a step-time factor"),
    "tool_errors": (0.0, 1.0, "a share of tool calls"),
}


def check_guardrails(g: api.Guardrails) -> list[tuple[str, str]]:
    """Problems pydantic cannot see, as (param under `guardrails`, message); [] when the object is usable."""
    problems: list[tuple[str, str]] = []
    for name, o in g.alarms.items():
        low, high, what = _RANGES[name]
        where = f"alarms.{name}"
        if o.threshold is not None:
            if name == "non_finite":
                problems.append((f"{where}.threshold", "non_finite has no threshold (any NaN or inf fires it)"))
            elif not (math.isfinite(o.threshold) or high == math.inf) or not low <= o.threshold <= high or (
                    name == "stalled" and o.threshold <= 1):
                bound = f"> {low:g}" if name == "stalled" else f"between {low:g} and {high:g}"
                problems.append((f"{where}.threshold", f"{name}'s threshold is {what}: it must be {bound}, "
                                 f"not {o.threshold:g}"))
        if o.critical is not None:
            if name != "train_valid_gap":
                problems.append((f"{where}.critical", f"only train_valid_gap has a critical bound, not {name}"))
            else:
                warn = o.threshold if o.threshold is not None else SPECS[name].threshold
                if not warn <= o.critical <= 1.0:
                    problems.append((f"{where}.critical", f"train_valid_gap's critical bound must be between its "
                                     f"warning threshold ({warn:g}) and 1, not {o.critical:g}"))
        if o.window is not None and name in ("valid_regression", "grader_slow", "non_finite", "stalled") \
                and o.window != 1:
            problems.append((f"{where}.window", f"{name} looks at the latest value only; it has no window"))
    return problems


# ---------------------------------------------------------------------- history (a resumed job's windows)

#: Step values the monitor reads besides the per-grader families (grader/<name>/error_rate, latency_p95_s).
_MONITORED = frozenset({metrics.FRAC_REWARD_ZERO_STD, metrics.TRAIN_VALID_GAP, metrics.TRAIN_REWARD,
                        metrics.CLIPPED_RATIO, metrics.ENTROPY, metrics.LOSS, metrics.GRAD_NORM,
                        metrics.TOOL_FAILURE_RATE})


def monitored_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a step's values the monitor reads (what a resumed worker's history carries)."""
    return {k: v for k, v in values.items() if k in _MONITORED or metrics.grader_of_health(k) is not None}


def history_bounds(guardrails: api.Guardrails | None) -> tuple[int, int]:
    """(first, latest): how many of a job's first and latest stored steps rebuild its monitor's windows -- the
    entropy baseline's steps, and the longest window plus the gap's smoothing."""
    s = settings(guardrails)
    return s["entropy_collapse"].window, max(a.window for a in s.values()) + GAP_SMOOTHING_STEPS


# ---------------------------------------------------------------------- alarms as the engine reports them


@dataclass
class Alarm:
    """An alarm firing (or clearing): JSON-serialisable through `as_dict` (the reporter interface sends that)."""

    name: str
    severity: Severity
    step: int | None
    value: float | None
    threshold: float | None
    message: str
    action: api.AlarmAction = "warn"
    grader: str | None = None
    cleared: bool = False

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.name, self.grader)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "severity": self.severity, "step": self.step, "value": _json_num(self.value),
                "threshold": _json_num(self.threshold), "message": self.message, "action": self.action,
                "grader": self.grader, "cleared": self.cleared}


def _json_num(x: float | None) -> float | None:
    """NaN/inf are not JSON: an alarm about a NaN records no value (its message says which)."""
    return x if x is None or math.isfinite(x) else None


def _num(values: Mapping[str, Any], key: str) -> float | None:
    v = values.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


# ---------------------------------------------------------------------- the engine


@dataclass
class _Condition:
    """What one rule says this step: firing at a severity (or not), with the value and bound it compared."""

    severity: Severity | None
    value: float | None
    threshold: float | None
    message: str = ""


@dataclass
class HealthMonitor:
    """Feeds on each step's values (and each validation mean); returns the alarms that fire or clear.

    An alarm fires when its condition starts to hold (an episode begins), again only if it escalates from
    warning to critical, and clears when the condition stops holding. Windowed alarms wait for a full window.
    `action` on a fired critical alarm is the job's `on_alarm`; warnings only warn.
    """

    guardrails: api.Guardrails = field(default_factory=api.Guardrails)
    groups_per_step: int = 1
    grader_time_limits: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.settings = settings(self.guardrails)
        self.active: dict[tuple[str, str | None], Severity] = {}
        biggest = max(s.window for s in self.settings.values()) + GAP_SMOOTHING_STEPS
        self._groups: deque[tuple[int, float]] = deque()  # (groups, zero-spread groups) per step
        self._values: deque[Mapping[str, Any]] = deque(maxlen=max(biggest, 1))
        self._entropy_start: list[float] = []
        self._saturated_since: int | None = None
        self.valid_best: float | None = None
        self.valid_best_step: int | None = None
        self.valid_latest: float | None = None

    # ------------------------------------------------------------------ feeding

    def train_valid_gap(self, values: Mapping[str, Any]) -> float | None:
        """Smoothed train reward (this step and the previous ones) minus the latest validation reward."""
        if self.valid_latest is None:
            return None
        rewards = [r for v in list(self._values)[-(GAP_SMOOTHING_STEPS - 1):] + [values]
                   if (r := _num(v, metrics.TRAIN_REWARD)) is not None and math.isfinite(r)]
        return sum(rewards) / len(rewards) - self.valid_latest if rewards else None

    def observe_step(self, step: int, values: Mapping[str, Any]) -> list[Alarm]:
        """One training step's values (health signals included); the alarms that fire or clear now."""
        self._values.append(values)
        frac = _num(values, metrics.FRAC_REWARD_ZERO_STD)
        if frac is not None and math.isfinite(frac):
            self._groups.append((self.groups_per_step, frac * self.groups_per_step))
        entropy = _num(values, metrics.ENTROPY)
        if entropy is not None and math.isfinite(entropy) and len(self._entropy_start) < \
                self.settings["entropy_collapse"].window:
            self._entropy_start.append(entropy)
        conditions: dict[tuple[str, str | None], _Condition] = {
            ("zero_signal", None): self._zero_signal(),
            ("train_valid_gap", None): self._gap(values),
            ("reward_saturated", None): self._saturated(step, values),
            ("length_clipped", None): self._mean_over("length_clipped", metrics.CLIPPED_RATIO,
                                                      "of completions cut at max_completion_length"),
            ("entropy_collapse", None): self._entropy(entropy),
            ("non_finite", None): self._non_finite(values),
            ("tool_errors", None): self._mean_over("tool_errors", metrics.TOOL_FAILURE_RATE,
                                                   "of tool calls failed because the tool did"),
        }
        for grader in self._graders(values):
            conditions[("grader_errors", grader)] = self._mean_over(
                "grader_errors", metrics.grader_error_rate(grader), f"of rows with an error from grader {grader}")
            conditions[("grader_slow", grader)] = self._slow(grader, values)
        return self._update(step, conditions)

    def replay(self, history: api.HealthHistory, before: tuple[int, int]) -> None:
        """Feed stored steps and validations (in the order training met them: step s, then its validation) that
        come before `before` = (step, 0 for a training step | 1 for a validation), raising nothing: the windows,
        the entropy baseline, the best validation and which alarms are active come back as they were."""
        events = [((h.step, 0), h) for h in history.steps] + [((v.step, 1), v) for v in history.validations]
        for at, event in sorted(events, key=lambda e: e[0]):
            if at >= before:
                continue
            if isinstance(event, api.HealthHistoryStep):
                self.observe_step(event.step, event.values)
            else:
                self.observe_validation(event.step, event.mean)

    def observe_validation(self, step: int, mean: float | None) -> list[Alarm]:
        """One validation pass's mean reward (step 0 = the base model)."""
        if mean is None or not math.isfinite(mean):
            return []
        self.valid_latest = mean
        cond = _Condition(None, None, None)
        s = self.settings["valid_regression"]
        if self.valid_best is not None:
            drop = self.valid_best - mean
            if drop > s.threshold:
                cond = _Condition(s.severity, drop, s.threshold,
                                  f"validation reward {mean:.3f} at step {step} is {drop:.3f} below the best "
                                  f"({self.valid_best:.3f} at step {self.valid_best_step}; bound {s.threshold:.2f})")
        if self.valid_best is None or mean > self.valid_best:
            self.valid_best, self.valid_best_step = mean, step
        return self._update(step, {("valid_regression", None): cond})

    # ------------------------------------------------------------------ rules

    def _zero_signal(self) -> _Condition:
        s = self.settings["zero_signal"]
        while len(self._groups) > 1 and sum(g for g, _ in list(self._groups)[1:]) >= s.window:
            self._groups.popleft()  # keep just enough steps to cover the last `window` groups
        groups = sum(g for g, _ in self._groups)
        if groups < s.window:
            return _Condition(None, None, s.threshold)
        share = sum(z for _, z in self._groups) / groups
        if share > s.threshold:
            return _Condition(s.severity, share, s.threshold,
                              f"{share:.0%} of the last {groups} groups had zero reward spread (bound "
                              f"{s.threshold:.0%}): no learning signal; the grader gives every completion of a "
                              "prompt the same score")
        return _Condition(None, share, s.threshold)

    def _gap(self, values: Mapping[str, Any]) -> _Condition:
        s = self.settings["train_valid_gap"]
        gap = _num(values, metrics.TRAIN_VALID_GAP)
        if gap is None or not math.isfinite(gap) or len(self._values) < s.window:  # a full smoothing window
            return _Condition(None, None, s.threshold)
        crit = s.critical
        if crit is not None and gap > crit:
            sev: Severity | None = "critical"
            bound = crit
        elif gap > s.threshold:
            sev, bound = s.severity, s.threshold
        else:
            return _Condition(None, gap, s.threshold)
        return _Condition(sev, gap, bound, f"smoothed train reward is {gap:.3f} above the latest validation reward "
                          f"({self.valid_latest:.3f}; bound {bound:.2f}): possible reward hacking or overfitting")

    def _saturated(self, step: int, values: Mapping[str, Any]) -> _Condition:
        s = self.settings["reward_saturated"]
        reward = _num(values, metrics.TRAIN_REWARD)
        if reward is None or not math.isfinite(reward) or reward < s.threshold:
            self._saturated_since = None
            return _Condition(None, reward, s.threshold)
        if self._saturated_since is None:
            self._saturated_since = step
        streak = step - self._saturated_since + 1
        improved = self.valid_best_step is not None and self.valid_best_step >= self._saturated_since
        if streak >= s.window and not improved:
            return _Condition(s.severity, reward, s.threshold,
                              f"train reward has been >= {s.threshold:.2f} for {streak} steps and validation has "
                              "not improved since: reward hacking or a too-easy task")
        return _Condition(None, reward, s.threshold)

    def _mean_over(self, name: str, key: str, what: str) -> _Condition:
        s = self.settings[name]
        recent = [x for v in list(self._values)[-s.window:] if (x := _num(v, key)) is not None and math.isfinite(x)]
        if len(recent) < s.window:
            return _Condition(None, None, s.threshold)
        mean = sum(recent) / len(recent)
        if mean > s.threshold:
            return _Condition(s.severity, mean, s.threshold,
                              f"{mean:.1%} {what} over the last {s.window} steps (bound {s.threshold:.0%})")
        return _Condition(None, mean, s.threshold)

    def _entropy(self, entropy: float | None) -> _Condition:
        s = self.settings["entropy_collapse"]
        if entropy is None or not math.isfinite(entropy) or len(self._entropy_start) < s.window:
            return _Condition(None, entropy, None)
        start = sum(self._entropy_start) / len(self._entropy_start)
        bound = s.threshold * start
        if start > 0 and entropy < bound:
            return _Condition(s.severity, entropy, bound,
                              f"entropy {entropy:.4f} is below {s.threshold:.0%} of its first-{s.window}-step mean "
                              f"({start:.4f}): the policy has collapsed onto few answers")
        return _Condition(None, entropy, bound)

    def _non_finite(self, values: Mapping[str, Any]) -> _Condition:
        s = self.settings["non_finite"]
        bad = [k for k in (metrics.LOSS, metrics.TRAIN_REWARD, metrics.GRAD_NORM)
               if (x := _num(values, k)) is not None and not math.isfinite(x)]
        if bad:
            return _Condition(s.severity, _num(values, bad[0]), None,
                              f"{' and '.join(bad)} is not finite ({_num(values, bad[0])}): training has diverged")
        return _Condition(None, None, None)

    def _slow(self, grader: str, values: Mapping[str, Any]) -> _Condition:
        s = self.settings["grader_slow"]
        limit = self.grader_time_limits.get(grader)
        p95 = _num(values, metrics.grader_latency_p95(grader))
        if limit is None or p95 is None or not math.isfinite(p95):
            return _Condition(None, p95, None)
        bound = s.threshold * limit
        if p95 > bound:
            return _Condition(s.severity, p95, bound,
                              f"grader {grader}'s p95 latency is {p95:.2f} s, over {s.threshold:.0%} of its "
                              f"{limit:g} s time limit: rows will start timing out (and scoring 0)")
        return _Condition(None, p95, bound)

    @staticmethod
    def _graders(values: Mapping[str, Any]) -> list[str]:
        return sorted({g for k in values if (g := metrics.grader_of_health(k)) is not None})

    # ------------------------------------------------------------------ episodes

    def _update(self, step: int, conditions: Mapping[tuple[str, str | None], _Condition]) -> list[Alarm]:
        out: list[Alarm] = []
        for key, cond in conditions.items():
            name, grader = key
            if not self.settings[name].enabled:
                continue
            was = self.active.get(key)
            if cond.severity is not None:
                if was is None or (was == "warning" and cond.severity == "critical"):
                    self.active[key] = cond.severity
                    action = self.guardrails.on_alarm if cond.severity == "critical" else "warn"
                    out.append(Alarm(name, cond.severity, step, cond.value, cond.threshold, cond.message,
                                     action, grader))
            elif was is not None:
                del self.active[key]
                value = "" if cond.value is None else f" ({cond.value:.4g})"
                out.append(Alarm(name, was, step, cond.value, cond.threshold,
                                 f"{name}{' for ' + grader if grader else ''} cleared at step {step}: the signal "
                                 f"recovered{value}", "warn", grader, cleared=True))
        return out


def grader_time_limits(spec: Mapping[str, Any], python_limit_s: float = 120.0) -> dict[str, float]:
    """Each grader's time limit per row in seconds, by the name its health keys use (the job's grader, and each
    sub-grader of a multi): python graders the sandbox's wall time (OpenAI's 2 minutes; the worker passes
    graders.SandboxLimits'), model graders the judge's HTTP timeout (`timeout`, 60 s by default). Graders
    without a limit are left out: no grader_slow for them."""
    out: dict[str, float] = {}

    def walk(g: Mapping[str, Any], name: str) -> None:
        kind = g.get("type")
        if kind == "python":
            out[name] = python_limit_s
        elif kind in ("score_model", "label_model"):
            out[name] = float(g.get("timeout") or 60.0)
        elif kind == "multi":
            for sub_name, sub in (g.get("graders") or {}).items():
                if isinstance(sub, Mapping):
                    walk(sub, str(sub_name))

    walk(spec, str(spec.get("name") or "grader").replace("/", "_"))
    return out


# ---------------------------------------------------------------------- stall rule (used by the scheduler)


def stall_after_s(step_times: list[float], guardrails: api.Guardrails | None, longest_validation_s: float = 0.0
                  ) -> float | None:
    """Seconds without a new step after which a job is `stalled`: factor x the median step time, at least the
    floor, plus the longest validation pass seen (validation runs inside a step); None before the first step."""
    if not step_times:
        return None
    g = guardrails or api.Guardrails()
    factor = settings(g)["stalled"].threshold
    return max(factor * statistics.median(step_times), g.stall_min_s) + longest_validation_s


def stall_alarm(step: int | None, idle_s: float, limit_s: float, guardrails: api.Guardrails | None) -> Alarm:
    g = guardrails or api.Guardrails()
    action: api.AlarmAction = "fail" if g.on_stall == "fail" else "warn"
    return Alarm("stalled", settings(g)["stalled"].severity, step, idle_s, limit_s,
                 f"no training step for {idle_s:.0f} s after step {step} (bound {limit_s:.0f} s: "
                 f"{settings(g)['stalled'].threshold:g}x the median step time, at least {g.stall_min_s:g} s); "
                 "every thread's stack is in the job log", action)


#: Records one alarm (the reporter interface); False when that episode is recorded already (a resumed worker).
AlarmSink = Callable[[Alarm], bool]
#: What a critical alarm makes the worker do: the outcome it ends with.
STOP_OUTCOME = {"pause": "paused", "cancel": "cancelled"}


class JobHealth:
    """The worker's side: adds the derived signals to a step, runs the monitor, records alarms, and says when
    a critical alarm asks the worker to stop (`stop`: ("paused" | "cancelled", reason)).

    The real GRPO worker and the fake test worker both drive it, so what the tests see is what training does.
    """

    def __init__(self, guardrails: api.Guardrails | None, groups_per_step: int, record: AlarmSink,
                 grader_time_limits: Mapping[str, float] | None = None,
                 history: api.HealthHistory | None = None) -> None:
        self.monitor = HealthMonitor(guardrails or api.Guardrails(), max(1, groups_per_step),
                                     dict(grader_time_limits or {}))
        self.record = record
        self.stop: tuple[str, str] | None = None
        # a resumed job's stored steps (Reporter.health_history): replayed, silently, before the first live
        # step or validation, up to it -- steps a crashed worker stored past its checkpoint are met again live
        self._history = history if history is not None and (history.steps or history.validations) else None

    def _catch_up(self, step: int | None, kind: int) -> None:
        if self._history is not None and step is not None:
            history, self._history = self._history, None
            self.monitor.replay(history, (step, kind))

    def add_signals(self, values: dict[str, Any], step: int | None = None) -> None:
        """Derived signals stored with the step (the train-validation gap); `step` lets a resumed job's history
        in first."""
        self._catch_up(step, 0)
        gap = self.monitor.train_valid_gap(values)
        if gap is not None:
            values[metrics.TRAIN_VALID_GAP] = gap

    def step(self, step: int, values: Mapping[str, Any]) -> list[Alarm]:
        self._catch_up(step, 0)
        return self._handle(self.monitor.observe_step(step, values))

    def validation(self, step: int, mean: float | None) -> list[Alarm]:
        self._catch_up(step, 1)
        return self._handle(self.monitor.observe_validation(step, mean))

    def _handle(self, alarms: list[Alarm]) -> list[Alarm]:
        for a in alarms:
            new = self.record(a)
            if new and not a.cleared and a.action in STOP_OUTCOME and self.stop is None:
                self.stop = (STOP_OUTCOME[a.action], f"alarm {a.name}: {a.message}")
        return alarms
