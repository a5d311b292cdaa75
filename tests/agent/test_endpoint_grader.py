"""The endpoint grader: the user's HTTP service scores samples (real local server, real daemon route)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import graders
from tests.daemon.test_endpoints import assert_openai_error, raw
from tests.support.daemon_proc import DaemonProcess
from tests.support.tool_server import ToolServer


@pytest.fixture
def server() -> Iterator[ToolServer]:
    with ToolServer(fail_first=2, delay_s=5.0) as srv:
        yield srv


def spec(url: str, **kw: object) -> dict[str, object]:
    return {"type": "endpoint", "name": "svc", "url": url, **kw}


def test_endpoint_grader_scores_what_the_service_answers(server: ToolServer) -> None:
    episode = {"output_text": "5", "tool_calls": [{"id": "call_1", "name": "add", "arguments": {"a": 2, "b": 2},
                                                   "result": '{"sum": 4}', "error": None, "latency_ms": 1.0}]}
    with graders.BatchGrader(spec(server.url("/grade"))) as batch:
        result = batch.grade(["3", "4", episode], [{"answer": "3"}, {"answer": "3"}, {"answer": "3"}])
    assert result.rewards == [1.0, 0.0, 0.5] and result.error_count == 0
    assert server.calls["/grade"] == 3
    bodies = [b for p, b in server.requests if p == "/grade"]
    assert {b["sample"]["output_text"] for b in bodies} == {"3", "4", "5"}
    assert all(b["item"] == {"answer": "3"} for b in bodies)
    assert graders.run_grader(spec(server.url("/number")), "x").reward == 0.25


@pytest.mark.slow
def test_endpoint_failures_are_flagged_never_raised(server: ToolServer) -> None:
    flaky = graders.run_grader(spec(server.url("/flakygrade"), max_retries=3), "x", {})
    assert not flaky.errors and flaky.reward == 1.0 and server.calls["/flakygrade"] == 3  # two 500s retried
    down = graders.run_grader(spec(server.url("/always500"), max_retries=1), "x", {})
    assert down.reward == 0.0 and down.errors == {"unresponsive_reward_error"}
    slow = graders.run_grader(spec(server.url("/slow"), timeout_s=0.3, max_retries=0), "x", {})
    assert slow.errors == {"unresponsive_reward_error"} and "timed out" in slow.details["other_error_details"]
    for path, words in (("/badjson", "not JSON"), ("/text", "not JSON"), ("/outofrange", "outside [0, 1]"),
                        ("/missing", "HTTP 404")):
        bad = graders.run_grader(spec(server.url(path), max_retries=0), "x", {})
        assert bad.errors == {"other_error"} and words in bad.details["other_error_details"], path


def test_endpoint_grader_spec_is_checked() -> None:
    assert graders.validate_grader(spec("http://127.0.0.1:1/g")) == []
    assert "url" in " ".join(graders.validate_grader(spec("file:///etc/passwd")))
    assert "timeout_s" in " ".join(graders.validate_grader(spec("http://x/g", timeout_s=0)))
    multi = {"type": "multi", "name": "m", "calculate_output": "svc", "graders": {"svc": spec("http://x/g")}}
    assert graders.validate_grader(multi) == []


@pytest.mark.slow
def test_daemon_runs_an_endpoint_grader(fake_worker_daemon: DaemonProcess, server: ToolServer) -> None:
    with raw(fake_worker_daemon) as h:
        ok = h.post("/v1/fine_tuning/alpha/graders/run",
                    json={"grader": spec(server.url("/grade")), "model_sample": "3", "item": {"answer": "3"}})
        assert ok.status_code == 200, ok.text
        assert ok.json()["reward"] == 1.0
        assert_openai_error(h.post("/v1/fine_tuning/alpha/graders/run",
                                   json={"grader": spec("ftp://x"), "model_sample": "3"}), 400)
