"""Agent RFT through the real daemon: the tool spec on job create (checked, snapshotted) and trajectories
stored by the worker's reporter, read back through the samples and validation endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon import api
from daemon.worker.episodes import EpisodeRow, EpisodeRunner
from daemon.worker.reporting import JobReporter
from daemon.worker.tool_runtime import ToolBox
from tests.daemon.test_endpoints import assert_openai_error, raw
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.jobs import job_request, make_files
from tests.support.tool_model import call_block, tool_tokenizer
from tests.support.tool_server import ToolServer

ADD_TOOL = {"type": "http", "url": "http://127.0.0.1:8765/add", "timeout_s": 5, "max_retries": 2,
            "headers": {"Authorization": "Bearer t"}}
PY_TOOL = {"type": "python", "source": "def call(arguments, item):\n    return arguments['a'] + arguments['b']\n"}


def with_tools(request: dict[str, Any], tools: Any) -> dict[str, Any]:
    request["method"]["reinforcement"]["tools"] = tools
    return request


def test_job_create_takes_and_snapshots_the_tool_spec(module_fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    with module_fake_worker_daemon.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(with_tools(job_request(train, valid, max_steps=2, max_episode_steps=3),
                                      {"add": ADD_TOOL, "py_add": PY_TOOL}))
        assert job.snapshot is not None and job.resolved_hyperparameters is not None
        assert job.resolved_hyperparameters.max_episode_steps == 3
        add = job.snapshot.tools["add"]
        assert isinstance(add, api.HttpToolRuntime) and add.url == ADD_TOOL["url"] and add.max_retries == 2
        assert isinstance(job.snapshot.tools["py_add"], api.PythonToolRuntime)
        assert job.method["reinforcement"]["tools"]["add"]["timeout_s"] == 5
        again = c.get_job(job.id)
        assert again.snapshot is not None and set(again.snapshot.tools) == {"add", "py_add"}
        plain = c.create_job(job_request(train, valid, max_steps=2))
        assert plain.snapshot is not None and plain.snapshot.tools == {}
        assert plain.resolved_hyperparameters is not None and plain.resolved_hyperparameters.max_episode_steps == 8


def test_bad_tool_specs_are_400s_naming_the_field(module_fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    with module_fake_worker_daemon.client() as c, raw(module_fake_worker_daemon) as h:
        train, valid = make_files(c, tmp_path)

        def create(tools: Any, **hp: Any) -> httpx.Response:
            return h.post("/v1/fine_tuning/jobs", json=with_tools(job_request(train, valid, max_steps=2, **hp), tools))

        cases: list[tuple[Any, str, str]] = [
            ({"add": {**ADD_TOOL, "url": "ftp://x/add"}}, "method.reinforcement.tools.add.url", "http"),
            ({"add": {**ADD_TOOL, "url": "/add"}}, "method.reinforcement.tools.add.url", "absolute"),
            ({"http": {**ADD_TOOL, "url": "/add"}}, "method.reinforcement.tools.http.url", "absolute"),
            ({"add": {**ADD_TOOL, "timeout_s": 0}}, "method.reinforcement.tools.add.timeout_s", "greater"),
            ({"add": {**ADD_TOOL, "max_retries": -1}}, "method.reinforcement.tools.add.max_retries", "greater"),
            ({"add": {**ADD_TOOL, "retries": 1}}, "method.reinforcement.tools.add.retries", "Unknown field"),
            ({"add": {"type": "grpc", "url": "http://x"}}, "method.reinforcement.tools.add", "type"),
            ({"add": {"type": "python", "source": "def grade(sample, item):\n    return 1\n"}},
             "method.reinforcement.tools.add.source", "call(arguments, item)"),
            ({"add": {"type": "python", "source": "def call(:\n"}},
             "method.reinforcement.tools.add.source", "line 1"),
            ({"bad name!": ADD_TOOL}, "method.reinforcement.tools", "tool name"),
            ([ADD_TOOL], "method.reinforcement.tools", "dictionary"),
        ]
        for tools, param, words in cases:
            error = assert_openai_error(create(tools), 400)
            assert error["param"] == param and words in error["message"], (tools, error)
        error = assert_openai_error(create({"add": ADD_TOOL}, use_vllm=True), 400,
                                    "method.reinforcement.hyperparameters.use_vllm")
        assert "tools" in error["message"]
        assert_openai_error(create({"add": ADD_TOOL}, max_episode_steps=0), 400,
                            "method.reinforcement.hyperparameters.max_episode_steps")


ADD_SCHEMA = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}


def scripted(tok: Any, turns: list[str]) -> Any:
    """A Generate writing the given turns in order (the loop, template, tokenizer and tools are real)."""
    def generate(sequences: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        n = tok.decode(sequences[0]).count("<|im_start|>user\n<tool_response>")  # tool turns so far
        return [list(tok(turns[n], add_special_tokens=False)["input_ids"]) + [tok.eos_token_id]] * len(sequences)
    return generate


@pytest.mark.slow
def test_trajectories_are_stored_and_served(module_fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    tok = tool_tokenizer()
    with ToolServer(fail_first=0) as srv:
        runner = EpisodeRunner(tok, ToolBox({"add": api.HttpToolRuntime(url=srv.url("/add"))}), 4, 2000)
        row = EpisodeRow(messages=[{"role": "user", "content": "1+2?"}], tools=[ADD_SCHEMA], item={"answer": "3"})
        [episode] = runner.run(scripted(tok, [call_block("add", a=1, b=2) + call_block("nope", x=1), "3"]), [row])
    with module_fake_worker_daemon.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=2, eval_interval=1))
        wait_until(lambda: c.get_job(job.id).status.is_terminal(), 60, what="fake job to finish")
        reporter = JobReporter(module_fake_worker_daemon.home, job.id)
        try:
            assert reporter.log_step(100, {"reward": 1.0}, samples=[{
                "prompt": "1+2?", "completion": episode.final_answer, "reward": 1.0, **episode.record()}])
            reporter.log_validation(100, [{"row_index": 0, "prompt": "1+2?", "reference": "3",
                                           "output": episode.final_answer, "reward": 1.0, **episode.record()}])
        finally:
            reporter.close()
        [sample] = c.samples(job.id, after_step=99).data
        [vrow] = c.validation(job.id, step=100).data
        plain = c.samples(job.id).data[-1]
        # a re-scoring grades the stored episode as the worker did: tool calls and turns included
        tool_use = {"type": "python", "name": "tool_use", "source": (
            "def grade(sample, item):\n"
            "    calls = sample.get('tool_calls') or []\n"
            "    ok = [c['name'] for c in calls if c['error'] is None]\n"
            "    return 0.5 * (ok == ['add']) + 0.5 * (len(sample.get('output_messages') or []) == 4)\n")}
        rescored = c.rescore(job.id, {"grader": tool_use, "steps": [100], "samples": True})
    for got in (sample, vrow):
        assert got.stop_reason == "final_answer" and got.output_messages is not None and got.tool_calls is not None
        assert [t.role for t in got.output_messages] == ["assistant", "tool", "tool", "assistant"]
        assert [(t.name, t.error is None) for t in got.tool_calls] == [("add", True), ("nope", False)]
        assert got.tool_calls[0].result == '{"sum": 3}' and got.tool_calls[0].latency_ms is not None
        assert got.tool_calls[0].arguments == {"a": 1, "b": 2}
        assert "unknown tool 'nope'" in (got.tool_calls[1].error or "")
        assert got.output_messages[2].content == json.dumps({"error": got.tool_calls[1].error})
    assert sample.completion == vrow.output == "3"
    assert plain.output_messages is None and plain.tool_calls is None and plain.stop_reason is None
    assert [st.mean for st in rescored.steps if st.step == 100] == [1.0]
    assert rescored.samples is not None and rescored.samples.samples == 3  # 2 from the fake worker, 1 episode
    assert rescored.samples.mean == 1.0 / 3
    # the wire JSON is the documented shape
    with raw(module_fake_worker_daemon) as h:
        body = h.get(f"/v1/fine_tuning/jobs/{job.id}/samples", params={"after_step": 99}).json()["data"][0]
    assert set(body["output_messages"][0]) == {"role", "content", "tool_calls", "tool_call_id", "name"}
    assert set(body["tool_calls"][0]) == {"id", "name", "arguments", "result", "error", "latency_ms"}


@pytest.mark.slow
def test_cli_create_takes_tools_from_a_file_or_inline(module_fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    from tests.daemon.test_cli import cli
    from tests.support.jobs import EXACT_GRADER, arithmetic_rows, write_jsonl

    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(EXACT_GRADER))
    train = str(write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(10, 20)))
    base = ("jobs", "create", "-m", "builtin:tiny-arith", "-t", train, "-g", str(grader), "--hp", "max_steps=1")
    spec = tmp_path / "tools.yaml"
    spec.write_text("add:\n  type: http\n  url: http://127.0.0.1:8765/add\n  max_retries: 0\n"
                    "lookup:\n  type: python\n  source: |\n    def call(arguments, item):\n        return 'x'\n")
    home = module_fake_worker_daemon.home
    job = json.loads(cli(home, *base, "--tools", str(spec), "--json").stdout)
    assert set(job["snapshot"]["tools"]) == {"add", "lookup"}
    assert job["snapshot"]["tools"]["add"]["max_retries"] == 0
    inline = json.loads(cli(home, *base, "--tools", json.dumps({"add": ADD_TOOL}), "--json").stdout)
    assert inline["snapshot"]["tools"]["add"]["url"] == ADD_TOOL["url"]
    bad = cli(home, *base, "--tools", json.dumps({"add": {"type": "http", "url": "nope"}}), check=False)
    assert bad.returncode != 0 and "--tools" in bad.stderr and "add.url" in bad.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("add: [unclosed\n")
    out = cli(home, *base, "--tools", str(broken), check=False)
    assert out.returncode != 0 and "broken.yaml: line 2" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_job_start_line_says_how_tools_run() -> None:
    from daemon.worker.grpo import tools_notice

    snapshot = {"model": "builtin:tiny-arith", "training_file": {"id": "file-x"}, "grader": {}, "seed": 1,
                "hyperparameters": {"n_epochs": 1, "batch_size": 2, "max_steps": 1, "learning_rate": 1e-3,
                                    "eval_interval": 1, "eval_samples": 1, "seed": 1, "num_generations": 2,
                                    "max_completion_length": 8, "max_episode_steps": 4}}
    rows = [{"messages": [], "item": {"tools": [ADD_SCHEMA]}}]
    without = api.JobSnapshot.model_validate(snapshot)
    assert "declare tools (add) but the job says how to run none" in (tools_notice(without, rows) or "")
    assert tools_notice(without, [{"messages": [], "item": {}}]) is None
    with_tools = api.JobSnapshot.model_validate({**snapshot, "tools": {"add": ADD_TOOL, "py": PY_TOOL}})
    line = tools_notice(with_tools, rows) or ""
    assert "max_episode_steps=4" in line and "add (http)" in line and "py (python)" in line
