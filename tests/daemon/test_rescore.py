"""Re-score without retraining: POST/GET /v1/fine_tuning/jobs/{id}/rescore on a real daemon and a stored job.

The job runs tests/support/fake_worker.py (validation rows at steps 0, 2, 4 and training samples written through
the worker's reporter), so the stored rows exist within a second; re-grading uses the real graders, python
ones in the bubblewrap sandbox.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import api
from daemon.client import ApiRequestError
from tests.daemon.test_endpoints import raw
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.jobs import job_request, make_files

ZERO = {"type": "python", "name": "always_zero", "source": "def grade(sample, item):\n    return 0.0\n"}
NON_EMPTY = {"type": "string_check", "name": "said_2", "input": "{{sample.output_text}}", "reference": "2",
             "operation": "eq"}
SAMPLE_ANSWER = {"type": "string_check", "name": "answer", "input": "{{sample.output_text}}",
                 "reference": "{{item.answer}}", "operation": "eq"}


@pytest.fixture
def finished_job(fake_worker_daemon: DaemonProcess, tmp_path: Path) -> tuple[DaemonProcess, str]:
    with fake_worker_daemon.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=4, eval_interval=2))
        wait_until(lambda: c.get_job(job.id).status is api.JobStatus.succeeded, 60, what="the fake job to finish")
    return fake_worker_daemon, job.id


@pytest.mark.slow
def test_rescore_with_a_zero_grader_gives_zero_means_and_keeps_the_original_scores(finished_job) -> None:
    d, job_id = finished_job
    with d.client() as c:
        steps = c.validation(job_id).steps
        assert steps == [0, 2, 4]
        before = {s: c.validation(job_id, step=s) for s in steps}
        compare_before = c.validation_compare(job_id)
        result = c.rescore(job_id, api.RescoreRequest(grader=ZERO, name="zero", samples=True))
        assert result.name == "zero" and [s.step for s in result.steps] == steps
        for s in result.steps:
            assert s.rows == 10 and s.mean == 0.0
            assert s.original_mean == pytest.approx(before[s.step].summary["reward_mean"])
            assert s.per_grader == {"always_zero": 0.0}
        assert result.samples is not None and result.samples.samples == 4 and result.samples.mean == 0.0
        assert result.samples.original_mean is not None and result.samples.original_mean > 0
        assert result.compare is not None and (result.compare.base_step, result.compare.step) == (0, 4)
        assert (result.compare.mean_diff, result.compare.ties, result.compare.p_value) == (0.0, 10, 1.0)
        # the original scores are untouched; the re-scoring reads beside them
        after = {s: c.validation(job_id, step=s) for s in steps}
        assert after == before
        assert c.validation_compare(job_id) == compare_before
        rescored = c.validation(job_id, step=4, rescoring="zero")
        assert [r.output for r in rescored.data] == [r.output for r in before[4].data]
        assert {r.reward for r in rescored.data} == {0.0} and rescored.summary["reward_mean"] == 0.0
        assert c.validation_compare(job_id, rescoring="zero").rescoring == "zero"
        assert [r.name for r in c.list_rescorings(job_id).data] == ["zero"]
        assert c.list_rescorings(job_id).data[0] == result
        events = c.list_events(job_id, limit=5).data
        assert any("Re-scored as 'zero'" in e.message and "original scores kept" in e.message for e in events)


@pytest.mark.slow
def test_rescore_grades_stored_samples_against_their_items_and_names_do_not_collide(finished_job) -> None:
    d, job_id = finished_job
    with d.client() as c:
        first = c.rescore(job_id, {"grader": SAMPLE_ANSWER, "samples": True, "steps": [4]})
        assert first.name == "answer"
        assert [s.step for s in first.steps] == [0, 4]  # the base step comes along for the comparison
        assert first.samples is not None and first.samples.mean == 1.0 and first.samples.without_item == 0
        # the fake worker stores no item with its validation rows: they come from the job's validation file
        # (an empty item would flag invalid_variable_error on {{item.answer}})
        assert all(s.rows == 10 and s.rows_with_errors == 0 for s in first.steps)
        second = c.rescore(job_id, {"grader": NON_EMPTY, "name": "answer-2b", "steps": [2]})
        third = c.rescore(job_id, {"grader": SAMPLE_ANSWER, "steps": [2]})
        assert (second.samples, third.name) == (None, "answer-2")
        with pytest.raises(ApiRequestError) as e:
            c.rescore(job_id, {"grader": NON_EMPTY, "name": "answer"})
        assert e.value.status_code == 409 and e.value.param == "name"
        assert [r.name for r in c.list_rescorings(job_id).data] == ["answer", "answer-2b", "answer-2"]


BAD_RESCORES = [
    ({"grader": {"type": "string_check"}}, 400, "grader"),
    ({"grader": ZERO, "name": "no spaces"}, 400, "name"),
    ({"grader": ZERO, "steps": [3]}, 404, "steps"),
    ({"grader": ZERO, "steps": [-1]}, 400, "steps.0"),
    ({"grader": ZERO, "samples": "maybe"}, 400, "samples"),
    ({"grader": ZERO, "extra": 1}, 400, "extra"),
]


@pytest.mark.slow
def test_rescore_refuses_bad_requests_with_the_field_named(finished_job) -> None:
    d, job_id = finished_job
    with raw(d) as h:
        for body, status, param in BAD_RESCORES:
            resp = h.post(f"/v1/fine_tuning/jobs/{job_id}/rescore", json=body)
            assert resp.status_code == status, (body, resp.text)
            assert resp.json()["error"]["param"] == param, (body, resp.json())
        assert h.post("/v1/fine_tuning/jobs/ftjob-nope/rescore", json={"grader": ZERO}).status_code == 404
        assert h.get("/v1/fine_tuning/jobs/ftjob-nope/rescore").status_code == 404
    with d.client() as c:
        assert c.list_rescorings(job_id).data == []  # nothing half-stored


@pytest.mark.slow
def test_cli_rescore_and_the_rescored_validation(finished_job, tmp_path: Path) -> None:
    import json

    from tests.daemon.test_cli import cli

    d, job_id = finished_job
    grader = tmp_path / "zero.py"
    grader.write_text(ZERO["source"])
    out = cli(d.home, "jobs", "rescore", job_id, "-g", str(grader), "--samples").stdout
    assert "Re-scoring 'zero' of" in out and "original scores are unchanged" in out
    assert "step 4 vs step 0 (re-scoring zero) over 10 rows: +0.000 [0.00, 0.00]  p=1  0↑ 0↓ 10=" in out
    assert "training samples: 4:" in out
    again = json.loads(cli(d.home, "jobs", "rescore", job_id, "-g", str(grader), "--step", "2", "--json").stdout)
    assert again["name"] == "zero-2" and [s["step"] for s in again["steps"]] == [0, 2]
    shown = cli(d.home, "jobs", "validation", job_id, "--rescoring", "zero").stdout
    assert "re-scoring zero" in shown
    missing = cli(d.home, "jobs", "rescore", job_id, "-g", str(grader), "--name", "zero", check=False)
    assert missing.returncode == 1 and "already has a re-scoring named 'zero'" in missing.stderr
