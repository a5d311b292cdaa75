"""Running tool calls against a real local HTTP tool server and in the python sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from daemon import api
from daemon.worker.tool_calls import ParsedCall
from daemon.worker.tool_runtime import ToolBox, ToolRequest, shown_text
from tests.support.tool_server import ToolServer

ADD: dict[str, object] = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                          "required": ["a", "b"]}
ITEM = {"answer": "3", "tools": []}


@pytest.fixture
def server() -> Iterator[ToolServer]:
    with ToolServer(fail_first=2, delay_s=5.0, parties=3) as srv:
        yield srv


def request(name: str, arguments: object = None, call_id: str = "call_1",
            schemas: dict[str, dict[str, object]] | None = None, error: str | None = None) -> ToolRequest:
    return ToolRequest(rollout_id="r-1", call_id=call_id,
                       call=ParsedCall(name=name, arguments={"a": 1, "b": 2} if arguments is None else arguments,
                                       error=error),
                       item=ITEM, schemas=schemas if schemas is not None else {name: ADD})


def box(**tools: api.HttpToolRuntime | api.PythonToolRuntime) -> ToolBox:
    return ToolBox(dict(tools))


def test_http_tool_gets_the_call_and_its_json_answer_is_the_result(server: ToolServer) -> None:
    tools = box(add=api.HttpToolRuntime(url=server.url("/add"), headers={"X-Key": "k"}))
    [record] = tools.run([request("add")])
    assert record.result == '{"sum": 3}' and record.error is None and record.latency_ms is not None
    assert server.calls["/add"] == 1
    assert server.requests[0] == ("/add", {"rollout_id": "r-1", "call_id": "call_1", "name": "add",
                                           "arguments": {"a": 1, "b": 2}, "item": ITEM})


def test_text_answers_are_used_as_is(server: ToolServer) -> None:
    [record] = box(ping=api.HttpToolRuntime(url=server.url("/text"))).run([request("ping", {}, schemas={"ping": {}})])
    assert record.result == "pong ping"


def test_5xx_is_retried_then_succeeds(server: ToolServer) -> None:
    [record] = box(add=api.HttpToolRuntime(url=server.url("/flaky"), max_retries=3)).run([request("add")])
    assert record.result == '{"sum": 3}' and server.calls["/flaky"] == 3  # two 500s, then the answer


def test_5xx_after_every_retry_is_a_tool_error_the_model_sees(server: ToolServer) -> None:
    [record] = box(add=api.HttpToolRuntime(url=server.url("/always500"), max_retries=2)).run([request("add")])
    assert server.calls["/always500"] == 3
    assert record.result is None and "HTTP 500" in (record.error or "") and "3 attempts" in (record.error or "")
    assert json.loads(shown_text(record)) == {"error": record.error}


def test_timeouts_are_retried_then_an_error(server: ToolServer) -> None:
    [record] = box(add=api.HttpToolRuntime(url=server.url("/slow"), timeout_s=0.3, max_retries=1)).run(
        [request("add")])
    assert "timed out after 0.3 s" in (record.error or "") and "2 attempts" in (record.error or "")
    assert server.calls["/slow"] == 2


def test_4xx_is_an_error_at_once(server: ToolServer) -> None:
    [record] = box(add=api.HttpToolRuntime(url=server.url("/nope"), max_retries=3)).run([request("add")])
    assert "HTTP 404" in (record.error or "") and server.calls["/nope"] == 1


def test_malformed_json_answer_is_a_tool_error(server: ToolServer) -> None:
    [record] = box(add=api.HttpToolRuntime(url=server.url("/badjson"))).run([request("add")])
    assert "malformed JSON" in (record.error or "") and record.result is None


def test_unreachable_endpoint_is_a_tool_error() -> None:
    with ToolServer() as srv:
        url = srv.url("/add")
    [record] = box(add=api.HttpToolRuntime(url=url, max_retries=1)).run([request("add")])
    assert "could not reach" in (record.error or "")


def test_parallel_calls_run_concurrently(server: ToolServer) -> None:
    """The /barrier route answers only when all three calls are in flight together."""
    tools = box(add=api.HttpToolRuntime(url=server.url("/barrier"), max_retries=0))
    records = tools.run([request("add", call_id=f"call_{i}") for i in range(3)])
    assert [r.error for r in records] == [None, None, None]
    assert [json.loads(r.result or "")["call_id"] for r in records] == ["call_0", "call_1", "call_2"]


def test_calls_that_cannot_run_never_reach_the_endpoint(server: ToolServer) -> None:
    tools = box(add=api.HttpToolRuntime(url=server.url("/add")))
    records = tools.run([
        request("add", error="malformed tool call: not JSON"),
        request("sub", schemas={"add": ADD}),  # not among the row's tools
        request("mul", schemas={}),  # the row declares nothing, the job does not run it
        request("add", {"a": "one", "b": 2}),
        request("add", {"a": 1}),
    ])
    errors = [r.error or "" for r in records]
    assert errors[0] == "malformed tool call: not JSON"
    assert "unknown tool 'sub'" in errors[1] and "add" in errors[1]
    assert "unknown tool 'mul'" in errors[2] and "the job runs these tools: add" in errors[2]
    assert errors[3].startswith("bad arguments") and "'a' must be integer" in errors[3]
    assert "missing required argument 'b'" in errors[4]
    assert all(r.latency_ms is None for r in records) and server.calls["/add"] == 0


def test_python_tool_runs_in_the_sandbox() -> None:
    source = ("import os\n"
              "def call(arguments, item):\n"
              "    return {'sum': arguments['a'] + arguments['b'], 'answer': item['answer'], 'pid': os.getpid()}\n")
    tools = box(add=api.PythonToolRuntime(source=source))
    try:
        [record] = tools.run([request("add")])
        result = json.loads(record.result or "{}")
        assert record.error is None and result["sum"] == 3 and result["answer"] == "3"
        import graders

        if graders.sandbox_mode() == "bubblewrap":  # its own pid namespace: the tool is pid 1 or 2 there
            assert result["pid"] <= 3
    finally:
        tools.close()


@pytest.mark.slow
def test_python_tool_errors_and_timeouts_are_tool_errors() -> None:
    raising = api.PythonToolRuntime(source="def call(arguments, item):\n    return 1 / 0\n")
    looping = api.PythonToolRuntime(source="def call(arguments, item):\n    while True:\n        pass\n",
                                    timeout_s=1.0)
    network = api.PythonToolRuntime(source=(
        "import urllib.request\n"
        "def call(arguments, item):\n"
        "    return urllib.request.urlopen('http://127.0.0.1:9/').read().decode()\n"))
    tools = box(div=raising, spin=looping, net=network)
    try:
        records = tools.run([request("div"), request("spin"), request("net")])
        assert "ZeroDivisionError" in (records[0].error or "")
        assert "timed out after 1 s" in (records[1].error or "")
        assert records[2].result is None and "the python tool failed" in (records[2].error or "")
    finally:
        tools.close()


def test_tool_errors_alarm_watches_tool_failures_not_model_mistakes() -> None:
    from daemon import health, metrics

    monitor = health.HealthMonitor(api.Guardrails(on_alarm="pause"))
    fired = []
    for step in range(1, 21):  # the model's own mistakes: many errors, but the tool never failed
        fired += monitor.observe_step(step, {metrics.TOOL_ERROR_RATE: 0.9, metrics.TOOL_FAILURE_RATE: 0.0})
    assert fired == []
    for step in range(21, 31):  # the endpoint goes down
        fired += monitor.observe_step(step, {metrics.TOOL_ERROR_RATE: 1.0, metrics.TOOL_FAILURE_RATE: 0.5})
    [alarm] = fired
    # the 10-step mean passes 10 % on the third failing step (3 x 0.5 / 10)
    assert (alarm.name, alarm.severity, alarm.action, alarm.step) == ("tool_errors", "critical", "pause", 23)
    assert "failed because the tool did" in alarm.message
    cleared = [a for s in range(31, 41) for a in monitor.observe_step(s, {metrics.TOOL_FAILURE_RATE: 0.0})]
    assert [a.cleared for a in cleared] == [True]


def test_failure_rate_counts_only_the_tools_failures(server: ToolServer) -> None:
    from daemon import metrics
    from daemon.worker.episodes import Episode, EpisodeRow, episode_metrics

    tools = box(add=api.HttpToolRuntime(url=server.url("/always500"), max_retries=0))
    records = tools.run([request("add"), request("add", {"a": "x", "b": 1}), request("sub", schemas={"add": ADD})])
    episode = Episode(row=EpisodeRow(messages=[], tools=None, item={}), rollout_id="r", prompt_ids=[],
                      turns=[api.TrajectoryTurn(role="assistant", content="", tool_calls=records)], steps=1)
    m = episode_metrics([episode])
    assert m[metrics.TOOL_ERROR_RATE] == 1.0 and m[metrics.TOOL_FAILURE_RATE] == 1 / 3


def test_the_docs_worked_example_tool_server_works(tmp_path: object) -> None:
    """docs/agent-rft.md's ~20-line HTTP tool, run as written (on a free port), called by the worker's ToolBox."""
    import re
    import socket
    import subprocess
    import sys
    from pathlib import Path

    from tests.support.daemon_proc import wait_until

    doc = (Path(__file__).resolve().parents[2] / "docs" / "agent-rft.md").read_text()
    source = re.search(r"```python\n(import json\nfrom http.server.*?)```", doc, re.DOTALL)
    assert source is not None
    assert len(source.group(1).strip().splitlines()) <= 25
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", source.group(1).replace("8765", str(port))])
    try:
        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(up, 30, what="the example tool server")
        tools = box(add=api.HttpToolRuntime(url=f"http://127.0.0.1:{port}/add"))
        ok, bad = tools.run([request("add", {"a": 512, "b": 389}), request("add", {"a": "x", "b": 1}, schemas={})])
        assert ok.result == '{"sum": 901}' and ok.error is None
        assert bad.result is not None and "bad arguments" in bad.result  # the tool's own error text, as a result
        tools.close()
    finally:
        server.kill()
        server.wait()


def test_tool_metrics_are_registered(server: ToolServer) -> None:
    from daemon import metrics
    from daemon.worker.episodes import Episode, EpisodeRow, episode_metrics

    tools = box(add=api.HttpToolRuntime(url=server.url("/always500"), max_retries=0))
    records = tools.run([request("add"), request("add", error="malformed tool call: not JSON"), request("mul")])
    episode = Episode(row=EpisodeRow(messages=[], tools=None, item={}), rollout_id="r", prompt_ids=[],
                      turns=[api.TrajectoryTurn(role="assistant", content="", tool_calls=records)], steps=1,
                      stop_reason="max_episode_steps")
    m = episode_metrics([episode])
    assert m[metrics.tool_errors("http_error")] == 1 and m[metrics.tool_errors("malformed_call")] == 1
    assert m[metrics.tool_errors("unknown_tool")] == 1
    assert metrics.unregistered(m) == []
    assert metrics.unregistered(metrics.valid_tool_metric(k) for k in m) == []
