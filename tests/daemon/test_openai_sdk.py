"""The official `openai` SDK drives the daemon over its Unix socket (OpenAI's shapes, unchanged)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import httpx
import openai
from openai.types.graders.string_check_grader_param import StringCheckGraderParam

from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.jobs import EXACT_GRADER, arithmetic_rows, write_jsonl

# The same grader, typed as the SDK's TypedDict (the shared constant is a plain dict).
EXACT = cast(StringCheckGraderParam, EXACT_GRADER)


def sdk(d: DaemonProcess) -> openai.OpenAI:
    http = httpx.Client(transport=httpx.HTTPTransport(uds=d.socket))
    # openai types http_client as its vendored httpx2.Client; an httpx.Client does the same job at run time
    return openai.OpenAI(base_url="http://rft-daemon/v1", api_key="local", http_client=http,  # type: ignore[arg-type]
                         max_retries=0)


def test_sdk_files_jobs_events_cancel(fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    client = sdk(fake_worker_daemon)
    with open(write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(10, 30)), "rb") as f:
        train = client.files.create(file=f, purpose="fine-tune")
    with open(write_jsonl(tmp_path / "valid.jsonl", arithmetic_rows(50, 10)), "rb") as f:
        valid = client.files.create(file=f, purpose="fine-tune")
    assert train.id.startswith("file-") and train.filename == "train.jsonl" and train.bytes > 0
    assert client.files.retrieve(train.id).id == train.id

    job = client.fine_tuning.jobs.create(
        model="builtin:tiny-arith", training_file=train.id, validation_file=valid.id, seed=3,
        method={"type": "reinforcement",
                "reinforcement": {"grader": EXACT, "hyperparameters": {"eval_interval": 2, "n_epochs": 1}}},
    )
    assert job.object == "fine_tuning.job" and job.method is not None and job.method.type == "reinforcement"
    assert job.method.reinforcement is not None and job.method.reinforcement.grader.type == "string_check"
    listed = client.fine_tuning.jobs.list(limit=10)
    assert [j.id for j in listed.data] == [job.id]
    got = client.fine_tuning.jobs.retrieve(job.id)
    assert got.id == job.id and got.training_file == train.id and got.seed == 3
    wait_until(lambda: client.fine_tuning.jobs.retrieve(job.id).status == "running", 30, what="running")
    events = client.fine_tuning.jobs.list_events(job.id, limit=50)
    assert events.data and all(e.object == "fine_tuning.job.event" for e in events.data)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.id == job.id
    final = wait_until(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status in ("cancelled", "succeeded")
                       and j, 30, what="cancel")
    assert final.status in ("cancelled", "succeeded")

    try:
        client.fine_tuning.jobs.retrieve("ftjob-missing")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and "ftjob-missing" in str(e)
    else:
        raise AssertionError("expected a 404")


def test_sdk_grader_run_and_validate(fake_worker_daemon: DaemonProcess) -> None:
    client = sdk(fake_worker_daemon)
    res = client.fine_tuning.alpha.graders.run(grader=EXACT, model_sample="46", item={"answer": "46"})
    assert res.reward == 1.0 and res.metadata.type == "string_check"
    assert res.metadata.errors.invalid_variable_error is False
    v = client.fine_tuning.alpha.graders.validate(grader=EXACT)
    assert v.grader is not None and v.grader.type == "string_check"
    try:
        bad = cast(StringCheckGraderParam, {**EXACT_GRADER, "operation": "nope"})
        client.fine_tuning.alpha.graders.validate(grader=bad)
    except openai.BadRequestError as e:
        assert e.status_code == 400
    else:
        raise AssertionError("expected a 400")
