"""Alarms end to end on a real daemon: the fake worker grades with the job's real grader, `daemon.health` raises
the alarms, the store records them, the API, stream and CLI show them, and on_alarm / on_stall act."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from daemon import api
from daemon.client import ApiRequestError, Client
from daemon.store import Store
from tests.daemon.test_endpoints import raw
from tests.daemon.test_reporting_api import http_daemon  # noqa: F401 - a fixture: workers reporting over HTTP
from tests.support.daemon_proc import REPO, DaemonProcess, wait_until
from tests.support.jobs import arithmetic_rows, job_request, make_files, write_jsonl

S = api.JobStatus
TERMINAL = {S.succeeded, S.failed, S.cancelled}
ALWAYS_ONE = {"type": "string_check", "name": "always_one", "input": "{{sample.output_text}}",
              "reference": "{{sample.output_text}}", "operation": "eq"}
# errors on every row whose first operand is even: half the arithmetic rows ({a}+{a+1}, answer 2a+1)
HALF_ERRORS = {"type": "python", "name": "half_broken", "source": (
    "def grade(sample, item):\n"
    "    if (int(item['answer']) // 2) % 2 == 0:\n"
    "        raise ValueError('this grader breaks on even rows')\n"
    "    return 1.0 if sample['output_text'] == item['answer'] else 0.0\n")}
HANGS = {"type": "python", "name": "hangs", "source": (
    "import time\n"
    "def grade(sample, item):\n"
    "    if item.get('hang'):\n"
    "        time.sleep(float(item['hang']))\n"
    "    return 1.0 if sample['output_text'] == item['answer'] else 0.0\n")}


@pytest.fixture
def grading_daemon(daemon_factory: Any) -> DaemonProcess:
    """Fake worker that really grades (RFT_FAKE_GRADE), a fast stall check."""
    return daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_FAKE_GRADE": "1",
                               "RFT_FAKE_STEP_S": "0.01", "RFT_CANCEL_GRACE_S": "3", "RFT_STALL_CHECK_S": "0.3"})


def create(c: Client, tmp: Path, grader: dict[str, Any], guardrails: dict[str, Any] | None = None,
           train: str | None = None, **hp: Any) -> api.FineTuningJob:
    train_id, valid_id = make_files(c, tmp)
    body = job_request(train or train_id, valid_id, batch_size=4, num_generations=4, **hp)
    body["method"]["reinforcement"]["grader"] = grader
    if guardrails is not None:
        body["guardrails"] = guardrails
    return c.create_job(body)


def wait_status(c: Client, job_id: str, statuses: set[api.JobStatus], timeout: float = 90) -> api.FineTuningJob:
    return wait_until(lambda: (lambda j: j if j.status in statuses else None)(c.get_job(job_id)), timeout=timeout,
                      interval=0.1, what=f"job {job_id} to reach {sorted(s.value for s in statuses)}")


def log_of(d: DaemonProcess, job_id: str) -> str:
    p = d.paths.job_log(job_id)
    return p.read_text(errors="replace") if p.exists() else "(no log)"


@pytest.mark.slow
def test_zero_signal_fires_within_its_window_and_pause_ends_the_job_paused(grading_daemon: DaemonProcess,
                                                                           tmp_path: Path) -> None:
    seen: list[api.StreamEvent] = []

    def listen() -> None:
        with grading_daemon.client() as sc:
            for ev in sc.stream():
                if ev.type is api.StreamEventType.job_alarm:
                    seen.append(ev)
                    return

    threading.Thread(target=listen, daemon=True).start()
    with grading_daemon.client() as c:
        wait_until(lambda: c.health(), what="daemon")
        job = create(c, tmp_path, ALWAYS_ONE, {"on_alarm": "pause"}, max_steps=40, eval_interval=20)
        assert job.snapshot is not None and job.snapshot.guardrails and job.snapshot.guardrails.on_alarm == "pause"
        paused = wait_status(c, job.id, {S.paused} | TERMINAL)
        assert paused.status is S.paused, (paused.error, log_of(grading_daemon, job.id))
        # 4 groups per step, a window of 20 groups: the alarm fires at step 5, and the job stops right there
        alarms = c.list_alarms(job.id).data
        assert [(a.name, a.severity, a.step, a.action) for a in alarms] == [("zero_signal", "critical", 5, "pause")]
        assert alarms[0].object == "fine_tuning.job.alarm" and alarms[0].value == 1.0 and alarms[0].threshold == 0.5
        assert paused.progress.step == 5
        assert [ck.step_number for ck in c.list_checkpoints(job.id).data] == [5]
        events = c.list_events(job.id, limit=100).data
        alarm_events = [e for e in events if e.data and e.data.get("alarm") == "zero_signal"]
        assert len(alarm_events) == 1 and alarm_events[0].level == "error", alarm_events
        assert any(e.message.startswith("Job paused: alarm zero_signal") for e in events), [e.message for e in events]
        metrics = c.metrics(job.id).data
        assert all(m.values["frac_reward_zero_std"] == 1.0 for m in metrics)
        assert metrics[-1].values["grader/always_one/error_rate"] == 0.0
        wait_until(lambda: seen, timeout=10, what="a job.alarm stream event")
        assert seen[0].job_id == job.id and seen[0].data and seen[0].data["alarm"] == "zero_signal"
        # resumed, the open episode does not pause it again: it runs to the end
        c.resume_job(job.id)
        done = wait_status(c, job.id, TERMINAL)
        assert done.status is S.succeeded, done.error
        # (its windows continue: train reward has been 1.0 since step 1 with no better validation than the base
        # model's 1.0, so reward_saturated warns at step 20, as it would have without the pause)
        after = [(a.name, a.step, a.action) for a in c.list_alarms(job.id).data]
        assert after == [("zero_signal", 5, "pause"), ("reward_saturated", 20, "warn")], after


@pytest.mark.slow
def test_a_grader_erroring_on_half_the_rows_raises_grader_errors(grading_daemon: DaemonProcess,
                                                                  tmp_path: Path) -> None:
    with grading_daemon.client() as c:
        job = create(c, tmp_path, HALF_ERRORS, max_steps=24, eval_interval=24)
        done = wait_status(c, job.id, TERMINAL, timeout=180)
        assert done.status is S.succeeded, (done.error, log_of(grading_daemon, job.id))  # on_alarm warn: goes on
        alarms = c.list_alarms(job.id).data
        errs = [a for a in alarms if a.name == "grader_errors"]
        assert len(errs) == 1, alarms
        a = errs[0]
        assert (a.grader, a.severity, a.action, a.step, a.threshold) == ("half_broken", "critical", "warn", 20, 0.05)
        assert a.value == pytest.approx(0.5, abs=0.1) and a.cleared_at is None
        rates = [m.values["grader/half_broken/error_rate"] for m in c.metrics(job.id).data]
        assert None not in rates
        known = [r for r in rates if r is not None]
        assert len(rates) == 24 and 0.2 < sum(known) / len(known) < 0.8
        p95 = c.metrics(job.id).data[-1].values["grader/half_broken/latency_p95_s"]
        assert p95 is not None and p95 > 0
        # the CLI lists it
        env = {**os.environ, "RFT_HOME": str(grading_daemon.paths.home), "PYTHONPATH": str(REPO), "COLUMNS": "200"}
        out = subprocess.run([sys.executable, "-m", "rft_tui", "jobs", "alarms", job.id], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "grader_errors (half_broken)" in out.stdout and "critical" in out.stdout, out
        as_json = json.loads(subprocess.run([sys.executable, "-m", "rft_tui", "jobs", "alarms", job.id, "--json"],
                                            env=env, capture_output=True, text=True, timeout=60).stdout)
        assert as_json["object"] == "list" and as_json["data"][0]["object"] == "fine_tuning.job.alarm"


def hanging_train_file(c: Client, tmp: Path, hang_s: float) -> str:
    """Arithmetic rows whose 25th row hangs the grader for `hang_s` seconds (step 7 at 4 rows a step)."""
    rows = [{**r, "hang": hang_s if i == 24 else 0} for i, r in enumerate(arithmetic_rows(10, 40))]
    return c.import_file(str(write_jsonl(tmp / "train-hang.jsonl", rows))).id


@pytest.mark.slow
def test_a_hanging_grader_raises_stalled_and_on_stall_fail_fails_with_the_stacks_in_the_log(
        grading_daemon: DaemonProcess, tmp_path: Path) -> None:
    with grading_daemon.client() as c:
        train = hanging_train_file(c, tmp_path, 600)
        job = create(c, tmp_path, HANGS, {"on_stall": "fail", "stall_min_s": 1.5, "stall_factor": 2}, train=train,
                     max_steps=30, eval_interval=30)
        failed = wait_status(c, job.id, TERMINAL, timeout=120)
        assert failed.status is S.failed, (failed.status, log_of(grading_daemon, job.id))
        assert failed.error is not None and failed.error.message.startswith("stalled: no training step for")
        assert failed.progress.step == 6
        alarms = [a for a in c.list_alarms(job.id).data if a.name == "stalled"]  # (made-up rewards: a gap may warn)
        assert [(a.severity, a.action, a.step) for a in alarms] == [("critical", "fail", 6)]
        log = log_of(grading_daemon, job.id)
        # faulthandler's dump of every thread: the worker's main thread waits in the grader bridge
        assert "most recent call first" in log and "rewards.py" in log and "fake_worker.py" in log, log[-3000:]
        events = [e.message for e in c.list_events(job.id, limit=100).data]
        assert any(m.startswith("Alarm stalled (critical) at step 6") for m in events), events


@pytest.mark.slow
def test_a_stall_that_ends_clears_and_with_on_stall_warn_the_job_goes_on(grading_daemon: DaemonProcess,
                                                                          tmp_path: Path) -> None:
    with grading_daemon.client() as c:
        # the row's 4 completions hang 4 s each: 4 s (graded side by side) to 16 s (one after another) without a
        # step, well over the 1.5 s stall bound either way
        train = hanging_train_file(c, tmp_path, 4)
        job = create(c, tmp_path, HANGS, {"stall_min_s": 1.5, "stall_factor": 2}, train=train, max_steps=10,
                     eval_interval=10)
        done = wait_status(c, job.id, TERMINAL, timeout=120)
        assert done.status is S.succeeded, (done.error, log_of(grading_daemon, job.id))
        [alarm] = [a for a in c.list_alarms(job.id).data if a.name == "stalled"]
        assert (alarm.action, alarm.step) == ("warn", 6)
        assert alarm.cleared_at is not None and alarm.cleared_step is not None and alarm.cleared_step >= 7
        assert "most recent call first" in log_of(grading_daemon, job.id)


@pytest.mark.parametrize(("guardrails", "param"), [
    ({"on_alarm": "explode"}, "guardrails.on_alarm"),
    ({"alarms": {"zero_sig": {"threshold": 0.5}}}, "guardrails.alarms.zero_sig"),
    ({"alarms": {"zero_signal": {"threshold": 2}}}, "guardrails.alarms.zero_signal.threshold"),
    ({"alarms": {"zero_signal": {"treshold": 0.2}}}, "guardrails.alarms.zero_signal.treshold"),
    ({"stall_min_s": 0}, "guardrails.stall_min_s"),
])
def test_bad_guardrails_are_refused_naming_the_field(module_fake_worker_daemon: DaemonProcess, tmp_path: Path,
                                                     guardrails: dict[str, Any], param: str) -> None:
    with module_fake_worker_daemon.client() as c:
        with pytest.raises(ApiRequestError) as err:
            create(c, tmp_path, ALWAYS_ONE, guardrails, max_steps=4)
        assert err.value.status_code == 400 and err.value.param == param, err.value.error


def test_alarms_of_an_unknown_job_is_a_404(module_fake_worker_daemon: DaemonProcess) -> None:
    with module_fake_worker_daemon.client() as c:
        with pytest.raises(ApiRequestError) as err:
            c.list_alarms("ftjob-nope")
        assert err.value.status_code == 404


@pytest.mark.parametrize("daemon_kind", ["fake_worker_daemon", "http_daemon"])
@pytest.mark.slow
def test_on_alarm_cancel_ends_the_job_cancelled_with_the_alarm_as_reason(request: pytest.FixtureRequest,
                                                                         tmp_path: Path, daemon_kind: str) -> None:
    """A critical alarm (here an override: reward_saturated at 0.3 over 3 steps, made critical) with on_alarm
    cancel; the same records go through the local reporter and over HTTP (the cluster workers' reporter)."""
    d: DaemonProcess = request.getfixturevalue(daemon_kind)
    with d.client() as c:
        guardrails = {"on_alarm": "cancel",
                      "alarms": {"reward_saturated": {"threshold": 0.3, "window": 3, "severity": "critical"}}}
        train, valid = make_files(c, tmp_path)
        body = job_request(train, valid, max_steps=20, eval_interval=10)
        body["guardrails"] = guardrails
        job = c.create_job(body)
        done = wait_status(c, job.id, TERMINAL)
        assert done.status is S.cancelled, (done.status, c.job_log(job.id).lines)
        [alarm] = c.list_alarms(job.id).data
        assert (alarm.name, alarm.severity, alarm.step, alarm.action) == ("reward_saturated", "critical", 3, "cancel")
        assert done.progress.step == 3
        events = [e.message for e in c.list_events(job.id, limit=100).data]
        assert any(m.startswith("Job cancelled: alarm reward_saturated") for m in events), events


@pytest.mark.slow
def test_cli_create_takes_guardrails_inline_or_from_a_file_and_names_a_bad_field(
        fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    from tests.daemon.test_cli import cli

    home = fake_worker_daemon.paths.home
    train = write_jsonl(tmp_path / "t.jsonl", arithmetic_rows(10, 40))
    valid = write_jsonl(tmp_path / "v.jsonl", arithmetic_rows(60, 10))
    grader = tmp_path / "g.json"
    grader.write_text(json.dumps(ALWAYS_ONE))
    base = ["jobs", "create", "--model", "builtin:tiny-arith", "-t", str(train), "-v", str(valid), "-g", str(grader),
            "--hp", "max_steps=4"]
    job = json.loads(cli(home, *base, "--guardrails", '{"on_alarm": "pause", "stall_min_s": 60}', "--json").stdout)
    assert job["snapshot"]["guardrails"]["on_alarm"] == "pause" and job["snapshot"]["guardrails"]["stall_min_s"] == 60
    g = tmp_path / "guardrails.json"
    g.write_text(json.dumps({"alarms": {"zero_signal": {"threshold": 0.8, "window": 40}}}))
    job = json.loads(cli(home, *base, "--guardrails", str(g), "--json").stdout)
    assert job["snapshot"]["guardrails"]["alarms"]["zero_signal"]["window"] == 40
    bad = cli(home, *base, "--guardrails", '{"alarms": {"zero_signal": {"threshold": 3}}}', check=False)
    assert bad.returncode != 0 and "guardrails.alarms.zero_signal.threshold" in bad.stderr + bad.stdout, bad
    assert "Traceback" not in bad.stderr
    g.write_text('{"on_alarm": "pause",\n "oops"}')
    broken = cli(home, *base, "--guardrails", str(g), check=False)
    assert broken.returncode != 0 and f"{g}: line 2" in broken.stderr + broken.stdout, broken


@pytest.mark.slow
def test_a_paused_then_resumed_job_continues_its_alarm_windows(daemon_factory: Any, tmp_path: Path) -> None:
    """zero_signal needs 3 steps (12 groups of 4); paused after step 1 or 2 and resumed, it fires at step 3 --
    the resumed worker rebuilt its windows from the stored steps -- not 3 steps after the resume."""
    d = daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_FAKE_GRADE": "1",
                            "RFT_FAKE_STEP_S": "1.0", "RFT_CANCEL_GRACE_S": "3"})
    with d.client() as c:
        job = create(c, tmp_path, ALWAYS_ONE, {"alarms": {"zero_signal": {"window": 12}}}, max_steps=5,
                     eval_interval=20)
        wait_until(lambda: c.metrics(job.id).data, timeout=60, interval=0.05, what="step 1")
        c.pause_job(job.id)
        paused = wait_status(c, job.id, {S.paused} | TERMINAL)
        assert paused.status is S.paused, (paused.error, log_of(d, job.id))
        stored = [m.step for m in c.metrics(job.id).data]
        assert stored in ([1], [1, 2]), f"paused too late to tell ({stored}): the window was full before the pause"
        assert c.list_alarms(job.id).data == []
        # what a cluster worker reads on resume: the same history, over the reporting API with the job's token
        store = Store(d.paths.db)
        try:
            token = store.mint_job_token(job.id)
        finally:
            store.close()
        with raw(d) as h:
            state = h.get(f"/v1/fine_tuning/jobs/{job.id}/report/state", headers={"Authorization": f"Bearer {token}"})
        assert state.status_code == 200, state.text
        history = api.ReportJobState.model_validate(state.json()).health
        assert [s.step for s in history.steps] == stored and [v.step for v in history.validations] == [0]
        assert all(s.values["frac_reward_zero_std"] == 1.0 for s in history.steps)
        c.resume_job(job.id)
        done = wait_status(c, job.id, TERMINAL)
        assert done.status is S.succeeded, (done.error, log_of(d, job.id))
        assert [(a.name, a.step) for a in c.list_alarms(job.id).data] == [("zero_signal", 3)]
