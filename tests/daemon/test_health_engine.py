"""The alarm engine (daemon/health.py) on its own: windows, episodes, clearing, thresholds, overrides, actions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from daemon import api, health, metrics
from daemon.health import HealthMonitor, JobHealth

REPO = Path(__file__).resolve().parents[2]


def sink(into: list[health.Alarm]) -> health.AlarmSink:
    """A JobHealth alarm sink that keeps every alarm it is given and accepts it."""
    def record(alarm: health.Alarm) -> bool:
        into.append(alarm)
        return True
    return record


def step_values(**kw: float) -> dict[str, float]:
    """A healthy step: some spread, short completions, steady entropy, no grader errors."""
    base = {metrics.TRAIN_REWARD: 0.5, metrics.FRAC_REWARD_ZERO_STD: 0.1, metrics.CLIPPED_RATIO: 0.0,
            metrics.ENTROPY: 1.0, metrics.LOSS: 0.01}
    base.update({k.replace("__", "/"): v for k, v in kw.items()})
    return base


def feed(mon: HealthMonitor, steps: range, **kw: float) -> list[health.Alarm]:
    out: list[health.Alarm] = []
    for s in steps:
        out += mon.observe_step(s, step_values(**kw))
    return out


def test_alarm_table_matches_the_wire_names_and_the_doc() -> None:
    assert tuple(health.SPECS) == api.ALARM_NAMES
    doc = (REPO / "docs" / "health.md").read_text()
    for spec in health.ALARMS:
        assert f"`{spec.name}`" in doc, f"docs/health.md does not list {spec.name}"
        assert spec.source, spec.name


def test_zero_signal_waits_for_its_window_of_groups_then_fires_once_and_clears() -> None:
    mon = HealthMonitor(groups_per_step=4)  # window 20 groups = 5 steps
    assert feed(mon, range(1, 5), frac_reward_zero_std=1.0) == []  # 16 groups: not a full window yet
    fired = feed(mon, range(5, 6), frac_reward_zero_std=1.0)
    assert [(a.name, a.severity, a.step, a.cleared) for a in fired] == [("zero_signal", "critical", 5, False)]
    assert fired[0].value == 1.0 and fired[0].threshold == 0.5 and fired[0].action == "warn"
    assert feed(mon, range(6, 30), frac_reward_zero_std=1.0) == []  # one episode, one alarm
    # recovery: the share over the last 20 groups falls to 50 % (not above the bound) -> cleared
    cleared = feed(mon, range(30, 33), frac_reward_zero_std=0.0)
    assert [(a.name, a.cleared, a.step) for a in cleared] == [("zero_signal", True, 32)]
    again = feed(mon, range(33, 40), frac_reward_zero_std=1.0)
    assert [a.name for a in again if not a.cleared] == ["zero_signal"]  # a new episode fires again


def test_exactly_at_the_bound_does_not_fire() -> None:
    mon = HealthMonitor(groups_per_step=20)
    assert feed(mon, range(1, 4), frac_reward_zero_std=0.5) == []


def test_train_valid_gap_warns_then_escalates_to_critical_with_the_pause_action() -> None:
    g = api.Guardrails(on_alarm="pause", alarms={"train_valid_gap": api.AlarmOverride(window=1)})
    mon = HealthMonitor(guardrails=g)
    mon.observe_validation(0, 0.5)
    values = step_values(reward=0.57)
    mon_gap = mon.train_valid_gap(values)
    assert mon_gap == pytest.approx(0.07)
    warn = mon.observe_step(1, {**values, metrics.TRAIN_VALID_GAP: mon_gap})
    assert [(a.name, a.severity, a.action) for a in warn] == [("train_valid_gap", "warning", "warn")]
    crit = mon.observe_step(2, step_values(reward=0.7, train_valid_gap=0.2))
    assert [(a.name, a.severity, a.action, a.threshold) for a in crit] == [
        ("train_valid_gap", "critical", "pause", 0.10)]
    assert mon.observe_step(3, step_values(train_valid_gap=0.3)) == []
    cleared = mon.observe_step(4, step_values(train_valid_gap=0.0))
    assert [(a.name, a.cleared) for a in cleared] == [("train_valid_gap", True)]


def test_gap_alarm_waits_for_a_full_smoothing_window() -> None:
    mon = HealthMonitor()
    mon.observe_validation(0, 0.2)
    assert feed(mon, range(1, 10), train_valid_gap=0.5) == []
    assert [a.name for a in feed(mon, range(10, 11), train_valid_gap=0.5)] == ["train_valid_gap"]


def test_gap_is_the_smoothed_train_reward_minus_the_latest_validation() -> None:
    mon = HealthMonitor()
    assert mon.train_valid_gap(step_values()) is None  # no validation yet
    for s, r in enumerate([0.2, 0.4, 0.6], start=1):
        mon.observe_step(s, step_values(reward=r))
    mon.observe_validation(3, 0.3)
    assert mon.train_valid_gap(step_values(reward=0.8)) == pytest.approx((0.2 + 0.4 + 0.6 + 0.8) / 4 - 0.3)


def test_valid_regression_against_the_best_and_its_recovery() -> None:
    mon = HealthMonitor()
    assert mon.observe_validation(0, 0.40) == []
    assert mon.observe_validation(10, 0.60) == []
    assert mon.observe_validation(20, 0.56) == []  # 0.04 below: within the bound
    fired = mon.observe_validation(30, 0.50)
    assert [(a.name, a.value) for a in fired] == [("valid_regression", pytest.approx(0.10))]
    assert [(a.name, a.cleared) for a in mon.observe_validation(40, 0.58)] == [("valid_regression", True)]


def test_reward_saturated_only_while_validation_does_not_improve() -> None:
    mon = HealthMonitor()
    mon.observe_validation(0, 0.4)
    assert feed(mon, range(1, 20), reward=0.99) == []
    assert [a.name for a in feed(mon, range(20, 21), reward=0.99)] == ["reward_saturated"]
    mon2 = HealthMonitor()
    mon2.observe_validation(0, 0.4)
    feed(mon2, range(1, 10), reward=1.0)
    mon2.observe_validation(10, 0.7)  # a new best during the streak: the task metric still improves
    assert feed(mon2, range(10, 25), reward=1.0) == []


def test_length_clipped_is_a_mean_over_its_window() -> None:
    mon = HealthMonitor()
    assert feed(mon, range(1, 20), completions__clipped_ratio=0.5) == []
    assert [a.name for a in feed(mon, range(20, 21), completions__clipped_ratio=0.5)] == ["length_clipped"]


def test_entropy_collapse_is_relative_to_the_first_steps() -> None:
    mon = HealthMonitor()
    feed(mon, range(1, 21), entropy=2.0)
    assert feed(mon, range(21, 25), entropy=0.5) == []
    fired = feed(mon, range(25, 26), entropy=0.1)
    assert [(a.name, a.threshold) for a in fired] == [("entropy_collapse", pytest.approx(0.2))]


def test_grader_errors_and_grader_slow_are_per_grader() -> None:
    mon = HealthMonitor(grader_time_limits={"py": 10.0})
    alarms: list[health.Alarm] = []
    for s in range(1, 21):
        alarms += mon.observe_step(s, {**step_values(), metrics.grader_error_rate("py"): 0.5,
                                       metrics.grader_latency_p95("py"): 0.1,
                                       metrics.grader_error_rate("exact"): 0.0})
    assert [(a.name, a.grader, a.severity) for a in alarms] == [("grader_errors", "py", "critical")]
    slow = mon.observe_step(21, {**step_values(), metrics.grader_error_rate("py"): 0.5,
                                 metrics.grader_latency_p95("py"): 6.0})
    assert [(a.name, a.grader, a.threshold) for a in slow] == [("grader_slow", "py", 5.0)]


def test_non_finite_fires_at_once() -> None:
    mon = HealthMonitor()
    fired = mon.observe_step(1, step_values(loss=math.nan))
    assert [(a.name, a.severity) for a in fired] == [("non_finite", "critical")]
    assert fired[0].as_dict()["value"] is None  # NaN is not JSON: the message names it instead
    assert "loss" in fired[0].message


def test_overrides_change_threshold_window_severity_and_can_disable() -> None:
    g = api.Guardrails(alarms={"zero_signal": api.AlarmOverride(threshold=0.9, window=4, severity="warning"),
                               "non_finite": api.AlarmOverride(enabled=False)})
    mon = HealthMonitor(guardrails=g, groups_per_step=4)
    fired = mon.observe_step(1, step_values(frac_reward_zero_std=1.0, loss=math.inf))
    assert [(a.name, a.severity, a.threshold) for a in fired] == [("zero_signal", "warning", 0.9)]


@pytest.mark.parametrize(("alarms", "param", "words"), [
    ({"zero_signal": {"threshold": 1.5}}, "alarms.zero_signal.threshold", "between 0 and 1"),
    ({"zero_signal": {"critical": 0.9}}, "alarms.zero_signal.critical", "only train_valid_gap"),
    ({"train_valid_gap": {"threshold": 0.2, "critical": 0.1}}, "alarms.train_valid_gap.critical", "between"),
    ({"non_finite": {"threshold": 1}}, "alarms.non_finite.threshold", "no threshold"),
    ({"valid_regression": {"window": 3}}, "alarms.valid_regression.window", "no window"),
    ({"stalled": {"threshold": 0.5}}, "alarms.stalled.threshold", "> 1"),
])
def test_bad_overrides_are_named(alarms: dict[str, dict[str, float]], param: str, words: str) -> None:
    problems = health.check_guardrails(api.Guardrails.model_validate({"alarms": alarms}))
    assert problems and problems[0][0] == param and words in problems[0][1], problems


def test_stall_bound_is_factor_times_median_with_a_floor_plus_validation() -> None:
    assert health.stall_after_s([], None) is None
    assert health.stall_after_s([1.0, 2.0, 100.0], None) == 300.0  # the 5-minute floor
    g = api.Guardrails(stall_min_s=1.0)
    assert health.stall_after_s([1.0, 2.0, 100.0], g) == 20.0
    assert health.stall_after_s([1.0, 2.0, 100.0], g, longest_validation_s=5.0) == 25.0
    g3 = api.Guardrails(stall_min_s=1.0, alarms={"stalled": api.AlarmOverride(threshold=3)})
    assert health.stall_after_s([2.0], g3) == 6.0
    alarm = health.stall_alarm(7, 30.0, 20.0, api.Guardrails(on_stall="fail"))
    assert alarm.action == "fail" and alarm.step == 7 and "stack" in alarm.message


def test_job_health_acts_once_and_not_for_an_episode_recorded_before() -> None:
    recorded: list[dict[str, object]] = []

    def record(a: health.Alarm) -> bool:
        recorded.append(a.as_dict())
        return len(recorded) > 1  # the first one was "open already" (a resumed worker)

    jh = JobHealth(api.Guardrails(on_alarm="cancel"), 20, record)
    jh.step(1, step_values(frac_reward_zero_std=1.0))
    assert jh.stop is None and recorded[0]["name"] == "zero_signal"
    jh.step(2, step_values(loss=math.nan))
    assert jh.stop is not None and jh.stop[0] == "cancelled" and "non_finite" in jh.stop[1]
    values = step_values()
    jh.validation(2, 0.1)
    jh.add_signals(values)
    assert metrics.TRAIN_VALID_GAP in values


def history_of(steps: list[tuple[int, dict[str, float]]], validations: list[tuple[int, float]]) -> api.HealthHistory:
    return api.HealthHistory(steps=[api.HealthHistoryStep(step=s, values=health.monitored_values(v)) for s, v in steps],
                             validations=[api.HealthHistoryValidation(step=s, mean=m) for s, m in validations])


def test_a_resumed_job_continues_its_windows_from_the_stored_steps() -> None:
    """Paused 3 steps into a 5-step zero_signal window, resumed: the alarm fires at step 5, not 3 steps later."""
    fired: list[health.Alarm] = []
    zero = step_values(frac_reward_zero_std=1.0)
    before = JobHealth(api.Guardrails(), 4, sink(fired))  # 4 groups a step: 5 steps
    for s in (1, 2, 3):
        before.step(s, zero)
    assert fired == []
    history = history_of([(s, zero) for s in (1, 2, 3)], [(0, 0.4)])
    resumed = JobHealth(api.Guardrails(), 4, sink(fired), history=history)
    resumed.step(4, zero)
    assert fired == []
    resumed.step(5, zero)
    assert [(a.name, a.step) for a in fired] == [("zero_signal", 5)]
    # without the history the window starts again
    fresh: list[health.Alarm] = []
    again = JobHealth(api.Guardrails(), 4, sink(fresh))
    for s in (4, 5, 6, 7):
        again.step(s, zero)
    assert fresh == []


def test_a_resumed_job_keeps_its_active_alarms_baseline_and_best_validation() -> None:
    """An alarm active at the pause is still active (no second firing); entropy's baseline and the best
    validation come back; the gap is smoothed over the stored steps; stored steps from the live step on are
    not replayed (a crashed worker meets them again)."""
    fired: list[health.Alarm] = []
    steps = [(s, step_values(frac_reward_zero_std=1.0, entropy=2.0)) for s in range(1, 21)]
    history = history_of(steps + [(21, step_values(frac_reward_zero_std=0.0))], [(0, 0.3), (10, 0.9), (20, 0.88)])
    resumed = JobHealth(api.Guardrails(), 20, sink(fired), history=history)
    values = step_values(frac_reward_zero_std=1.0, entropy=0.1)
    resumed.add_signals(values, 21)  # step 21 again (it was stored past the checkpoint): not replayed
    mon = resumed.monitor
    assert mon.valid_best == 0.9 and mon.valid_best_step == 10 and mon.valid_latest == 0.88
    assert len(mon._entropy_start) == 20 and ("zero_signal", None) in mon.active  # fired during the replay
    assert values[metrics.TRAIN_VALID_GAP] == pytest.approx(0.5 - 0.88)  # smoothed train 0.5, validation 0.88
    resumed.step(21, values)
    # zero_signal stays active (no new episode); entropy 0.1 < 10 % of its 2.0 baseline fires now
    assert [(a.name, a.step) for a in fired] == [("entropy_collapse", 21)]
    resumed.validation(21, 0.7)  # 0.2 below the best 0.9 (replayed; 0.88 at the pause was within bounds)
    assert [(a.name, a.step) for a in fired][-1] == ("valid_regression", 21)


def test_history_bounds_follow_the_guardrails() -> None:
    assert health.history_bounds(None) == (20, 30)
    wide = api.Guardrails(alarms={"zero_signal": api.AlarmOverride(window=100)})
    assert health.history_bounds(wide) == (20, 110)
    assert set(health.monitored_values({"loss": 1.0, "learning_rate": 0.1, "grader/g/error_rate": 0.0,
                                        "grader/g/latency_p95_s": 0.1, "completions/mean_length": 3.0})) == {
        "loss", "grader/g/error_rate", "grader/g/latency_p95_s"}
