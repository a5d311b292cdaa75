"""Agent RFT end to end: the real daemon, the real GRPO worker and pre-flight, a real HTTP tool server.

The base model is a tiny model trained to call `add` (tests/support/tool_model.py), so episodes really
call the tool: the worker's training rollouts and validation both run multi-turn episodes, store their
trajectories and the tools/* metrics; pre-flight reports the base model's tool use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daemon import api, metrics
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.jobs import write_jsonl
from tests.support.tool_model import ADD_TOOL_SCHEMA
from tests.support.tool_server import ToolServer

pytestmark = pytest.mark.slow

GRADER = {"type": "string_check", "name": "answer", "operation": "eq", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}"}


def rows(n: int, start: int) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": f"What is {a}+{b}?"}], "tools": [ADD_TOOL_SCHEMA],
             "answer": str(a + b)} for a, b in ((1 + i % 3, 2 - i % 3 + 3 * (i // 3)) for i in range(start, start + n))]


def agent_request(c: Any, tmp: Path, model: Path, url: str, **hp: Any) -> dict[str, Any]:
    train = c.import_file(str(write_jsonl(tmp / "train.jsonl", rows(8, 0))))
    valid = c.import_file(str(write_jsonl(tmp / "valid.jsonl", rows(4, 100))))
    return {"model": str(model), "training_file": train.id, "validation_file": valid.id, "seed": 3,
            "method": {"type": "reinforcement", "reinforcement": {
                "grader": GRADER, "hyperparameters": hp,
                "tools": {"add": {"type": "http", "url": url, "timeout_s": 5, "max_retries": 1}}}}}


def test_training_job_plays_episodes_with_the_tool(daemon: DaemonProcess, tool_caller: Path, tmp_path: Path) -> None:
    with ToolServer() as srv, daemon.client() as c:
        job = c.create_job(agent_request(c, tmp_path, tool_caller, srv.url("/add"), max_steps=2, batch_size=2,
                                         num_generations=2, eval_interval=1, eval_samples=2,
                                         max_completion_length=160, max_episode_steps=3))
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 600, what="agent job")
        assert done.status is api.JobStatus.succeeded, (done.error, daemon.paths.job_dir(job.id))
        steps = c.metrics(job.id).data
        samples = c.samples(job.id).data
        validation = c.validation(job.id, step=0)
        event_objects = c.list_events(job.id, limit=100).data
        events = [e.message for e in event_objects]
        calls = srv.calls["/add"]
        rollouts = {body["rollout_id"] for _, body in srv.requests}
    assert [s.step for s in steps] == [1, 2]
    for step in steps:
        assert metrics.TOOL_CALL_RATE in step.values and metrics.TOOL_ERROR_RATE in step.values
        assert metrics.unregistered(step.values) == []
    call_rate = steps[0].values[metrics.TOOL_CALL_RATE]
    assert call_rate is not None and call_rate > 0
    assert samples and all(s.output_messages is not None and s.stop_reason for s in samples)
    assert any(s.tool_calls for s in samples)  # sampled at temperature 1: some calls may come out malformed
    assert all(r.output_messages is not None for r in validation.data) and len(validation.data) == 2
    for row in validation.data:  # greedy: the base model calls add once, then answers with its sum
        assert row.tool_calls and [(t.name, t.error, t.result) for t in row.tool_calls] == [
            ("add", None, '{"sum": 3}')]
        assert row.stop_reason == "final_answer" and row.output == "3"
        assert [m.role for m in row.output_messages or []] == ["assistant", "tool", "assistant"]
    assert validation.summary["tool_call_rate"] == 1.0 and validation.summary["tool_error_rate"] == 0.0
    scores = [e.data["scores"] for e in event_objects if e.type == "metrics" and e.data and "scores" in e.data
              and e.data.get("step") == 0]
    assert scores and scores[0]["valid/tools/call_rate"] == 1.0 and "valid/tools/latency_p50_ms" in scores[0]
    assert calls > 0 and any(r.startswith(f"{job.id}-train-") for r in rollouts)
    assert any(r.startswith(f"{job.id}-valid-") for r in rollouts)
    assert any("Agent RFT: multi-turn episodes" in m for m in events)


def test_preflight_reports_the_base_models_tool_use(daemon: DaemonProcess, tool_caller: Path,
                                                    tmp_path: Path) -> None:
    with ToolServer() as srv, daemon.client() as c:
        request = agent_request(c, tmp_path, tool_caller, srv.url("/add"), max_completion_length=160,
                                max_episode_steps=3)
        report = c.preflight({**request, "rows": 3, "completions_per_row": 2})
        broken = c.preflight({**agent_request(c, tmp_path, tool_caller, srv.url("/always500"),
                                              max_completion_length=160, max_episode_steps=2),
                              "rows": 2, "completions_per_row": 2})
    assert report.tools is not None and report.tools.episodes == 6
    assert report.tools.calls > 0 and report.tools.call_rate > 0.5
    assert sum(report.tools.stop_reasons.values()) == 6
    assert srv.calls["/add"] > 0
    assert broken.tools is not None and broken.tools.errors.get("http_error", 0) > 0
    assert broken.tools.error_rate > 0.5 and "Tool calls fail" in broken.verdict
