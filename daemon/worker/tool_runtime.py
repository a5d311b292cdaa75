"""Running the model's tool calls: the job's HTTP endpoints and python tools (in the sandbox), concurrently.

`ToolBox.run` takes one episode turn's calls (or a whole batch of episodes' calls) and returns one
`api.ToolCallRecord` per call, in order, never raising: a malformed call, a tool the row does not declare or
the job does not say how to run, arguments that break the tool's schema, a 4xx, a 5xx or a timeout after
the retries, or a python tool that raises -- each becomes the record's `error`, which the model is shown as
the tool's answer.

HTTP tools are called from this (worker) process only, at exactly the URL the job names: no proxy from the
environment, no redirects followed. Python tools run in the python-grader sandbox's pool
(`graders.sandbox.default_pool`): a worker there runs one tool's source only, never a grader's, and has no
network. No torch here.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from daemon import api
from daemon.worker.tool_calls import ParsedCall, argument_problems
from graders.http_retry import endpoint_client, post_with_retries

#: A tool answer longer than this is cut (the model's context is the real limit).
MAX_RESULT_CHARS = 8_000
MAX_CONCURRENT_CALLS = 32


@dataclass
class ToolRequest:
    """One call to run, with what the tool endpoint is told about it."""

    rollout_id: str
    call_id: str
    call: ParsedCall
    item: dict[str, Any]
    schemas: dict[str, dict[str, Any]]  # the row's tools: name -> parameters schema


def shown_text(record: api.ToolCallRecord) -> str:
    """What the model reads as the tool's answer: its result, or `{"error": ...}`."""
    if record.error is not None:
        return json.dumps({"error": record.error}, ensure_ascii=False)
    return record.result or ""


def error_kind(error: str) -> str:
    """A failed call's kind, from the error text this module and the parser write (for counts and alarms)."""
    for prefix, kind in (("malformed tool call", "malformed_call"), ("arguments over", "malformed_call"),
                         ("unknown tool", "unknown_tool"), ("bad arguments", "bad_arguments"),
                         ("timed out", "timeout"), ("could not reach", "unreachable"),
                         ("the tool endpoint answered HTTP", "http_error"),
                         ("the tool endpoint answered malformed", "bad_answer"),
                         ("the python tool failed", "python_error")):
        if error.startswith(prefix):
            return kind
    return "other"


#: Error kinds that are the tool's failure, not the model's mistake (what the tool_errors alarm watches).
TOOL_FAILURES = frozenset({"http_error", "timeout", "unreachable", "bad_answer", "python_error", "other"})


def _cut(text: str) -> str:
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + " ...[truncated]"


class ToolBox:
    """The job's tools (name -> how it runs) and the machinery to run calls to them."""

    def __init__(self, runtimes: dict[str, api.HttpToolRuntime | api.PythonToolRuntime]) -> None:
        self.runtimes = dict(runtimes)
        self._client: Any = None
        self._pool: Any = None
        self._executor = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_CALLS, thread_name_prefix="rft-tool")
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ running

    def run(self, requests: Sequence[ToolRequest]) -> list[api.ToolCallRecord]:
        """Every request's record, in order; the calls run concurrently, each within its own timeout."""
        return list(self._executor.map(self.run_one, requests))

    def run_one(self, req: ToolRequest) -> api.ToolCallRecord:
        call = req.call
        record = api.ToolCallRecord(id=req.call_id, name=call.name, arguments=call.arguments)
        problem = self._problem(req)
        if problem is not None:
            record.error = problem
            return record
        runtime = self.runtimes[call.name]
        started = time.perf_counter()
        try:
            if isinstance(runtime, api.HttpToolRuntime):
                record.result, record.error = self._http(runtime, req)
            else:
                record.result, record.error = self._python(runtime, req)
        except Exception as exc:  # noqa: BLE001 - a tool failure is the model's to see, never the job's end
            record.result, record.error = None, f"tool failed: {type(exc).__name__}: {exc}"
        record.latency_ms = (time.perf_counter() - started) * 1000.0
        return record

    def _problem(self, req: ToolRequest) -> str | None:
        """Why this call cannot run (malformed, unknown tool, bad arguments), or None."""
        call = req.call
        if call.error is not None:
            return call.error
        if req.schemas and call.name not in req.schemas:
            return f"unknown tool '{call.name}' (this conversation's tools: {', '.join(sorted(req.schemas))})"
        if call.name not in self.runtimes:
            known = ", ".join(sorted(self.runtimes)) or "none"
            return f"unknown tool '{call.name}' (the job runs these tools: {known})"
        schema = req.schemas.get(call.name) or {}
        problems = argument_problems(call.arguments, schema) if isinstance(call.arguments, dict) else []
        if problems:
            return "bad arguments: " + "; ".join(problems)
        return None

    # ------------------------------------------------------------------ http

    def _http(self, runtime: api.HttpToolRuntime, req: ToolRequest) -> tuple[str | None, str | None]:
        """POST the call (graders.http_retry: 5xx, timeouts and refusals retried with backoff); the answer's text,
        or the error the model sees."""
        body = {"rollout_id": req.rollout_id, "call_id": req.call_id, "name": req.call.name,
                "arguments": req.call.arguments, "item": req.item}
        response, failure = post_with_retries(self._http_client(), runtime.url, body, headers=runtime.headers,
                                              timeout_s=runtime.timeout_s, max_retries=runtime.max_retries,
                                              endpoint="the tool endpoint")
        if response is None:
            return None, failure
        if response.status_code >= 400:
            return None, f"the tool endpoint answered HTTP {response.status_code}: {response.text[:500]}"
        return _answer(response)

    def _http_client(self) -> Any:
        with self._lock:
            if self._client is None:  # no proxy from the environment, no redirects: only the URL the job names
                self._client = endpoint_client(max_connections=MAX_CONCURRENT_CALLS)
            return self._client

    # ------------------------------------------------------------------ python

    def _python(self, runtime: api.PythonToolRuntime, req: ToolRequest) -> tuple[str | None, str | None]:
        outcome = self._sandbox().call_tool(runtime.source, [(req.call.arguments, req.item)],
                                            wall_time_s=runtime.timeout_s)[0]
        if outcome.error is None and outcome.text is not None:
            return _cut(outcome.text), None
        if outcome.error == "timeout":
            return None, f"timed out after {runtime.timeout_s:g} s"
        details = (outcome.details or outcome.error_type or "error").strip()
        return None, f"the python tool failed: {details[-1500:]}"

    def _sandbox(self) -> Any:
        from graders.sandbox import default_pool

        with self._lock:
            if self._pool is None:
                self._pool = default_pool()
            return self._pool

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()


def _answer(response: Any) -> tuple[str | None, str | None]:
    """A 2xx answer as the tool's text: JSON (a string as is, anything else compact JSON) or plain text."""
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            value = json.loads(response.content)
        except ValueError as exc:
            return None, f"the tool endpoint answered malformed JSON ({exc}): {response.text[:200]}"
        return _cut(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)), None
    return _cut(response.text), None
