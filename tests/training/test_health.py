"""Health on real GRPO training: TRL's signals and ours land every step, and a critical alarm pauses the job."""

from __future__ import annotations

import pytest

from daemon import api, metrics
from tests.training.conftest import ARITH, wait_status, worker_log

S = api.JobStatus
ALWAYS_ONE = {"type": "string_check", "name": "always_one", "input": "{{sample.output_text}}",
              "reference": "{{sample.output_text}}", "operation": "eq"}


@pytest.mark.slow
def test_a_grader_that_always_returns_1_raises_zero_signal_and_pause_ends_the_job_paused(daemon, rft_home) -> None:
    c = daemon.client()
    train = c.import_file(str(ARITH / "train.jsonl")).id
    valid = c.import_file(str(ARITH / "valid.jsonl")).id
    job = c.create_job({"model": "builtin:tiny-arith", "training_file": train, "validation_file": valid, "seed": 7,
                        "guardrails": {"on_alarm": "pause"},
                        "method": {"type": "reinforcement", "reinforcement": {"grader": ALWAYS_ONE, "hyperparameters": {
                            "batch_size": 4, "num_generations": 4, "eval_samples": 8, "max_steps": 30,
                            "eval_interval": 15}}}})
    paused = wait_status(c, job.id, {S.paused, S.succeeded, S.failed, S.cancelled})
    assert paused.status is S.paused, (paused.error, worker_log(rft_home, job.id))
    # 4 prompt groups per step, a window of 20 groups: step 5, where the worker checkpoints and stops
    [alarm] = c.list_alarms(job.id).data
    assert (alarm.name, alarm.severity, alarm.step, alarm.action, alarm.value) == ("zero_signal", "critical", 5,
                                                                                   "pause", 1.0)
    assert paused.progress.step == 5 and [ck.step_number for ck in c.list_checkpoints(job.id).data] == [5]
    events = [e.message for e in c.list_events(job.id, limit=100).data]
    assert any(m.startswith("Job paused: alarm zero_signal") for m in events), events
    steps = c.metrics(job.id).data
    assert len(steps) == 5
    for m in steps:  # every health signal, every step: TRL's and ours, all in the registry
        v = m.values
        assert v[metrics.FRAC_REWARD_ZERO_STD] == 1.0 and v[metrics.TRAIN_REWARD] == 1.0
        for key in (metrics.ENTROPY, metrics.CLIPPED_RATIO, "completions/mean_length", "completions/max_length",
                    "reward_std", metrics.STEP_WALL_S, metrics.grader_error_rate("always_one"),
                    metrics.grader_latency_p50("always_one"), metrics.grader_latency_p95("always_one"),
                    metrics.TRAIN_VALID_GAP):
            assert v.get(key) is not None, (m.step, key, sorted(v))
        assert v[metrics.TRAIN_VALID_GAP] == pytest.approx(0.0)  # validation scores 1.0 too
        assert metrics.unregistered(v) == []
    assert "[alarm] zero_signal at step 5" in (rft_home / "jobs" / job.id / "worker.log").read_text()
