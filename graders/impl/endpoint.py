"""endpoint graders: the user's HTTP service scores each sample (OpenAI Agent RFT's endpoint grader).

POST `{"sample": {...}, "item": {...}}` to the spec's URL -- from the grading process, never from the sandbox,
no proxy from the environment, no redirects -- and read a JSON number or `{"reward": number}`. 5xx, timeouts
and connection errors are retried with exponential backoff, then flagged `unresponsive_reward_error`; any
other bad answer (4xx, not JSON, no number, outside [0, 1]) is `other_error` with the reason. Calls for a
batch run concurrently on the runtime's threads.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

from graders.http_retry import endpoint_client, post_with_retries
from graders.impl.base import Engine, Runtime
from graders.result import GraderResult
from graders.spec import EndpointGrader
from graders.templates import SampleContext


class _Failure(Exception):
    def __init__(self, flag: str, detail: str) -> None:
        super().__init__(detail)
        self.flag = flag
        self.detail = detail


class EndpointEngine(Engine):
    type = "endpoint"

    def __init__(self, spec: EndpointGrader) -> None:
        self.name = spec.name
        self.spec = spec
        self._client: Any = None
        self._lock = threading.Lock()

    def grade_batch(self, contexts: Sequence[SampleContext], runtime: Runtime) -> list[GraderResult]:
        return runtime.map(self._grade_one, list(contexts), concurrency=min(32, len(contexts)))

    def _grade_one(self, ctx: SampleContext) -> GraderResult:
        started = time.perf_counter()
        try:
            reward = self._ask({"sample": ctx.sample_dict(), "item": ctx.item})
        except _Failure as failure:
            result = GraderResult.failure(self.name, self.type, failure.flag, failure.detail)
            result.execution_time = time.perf_counter() - started
            return result
        return GraderResult(reward, self.name, self.type, execution_time=time.perf_counter() - started)

    def _ask(self, body: dict[str, Any]) -> float:
        spec = self.spec
        response, failure = post_with_retries(self._http(), spec.url, body, headers=spec.headers,
                                              timeout_s=spec.timeout_s, max_retries=spec.max_retries,
                                              endpoint="the grader endpoint", timeout_prefix="the grader endpoint ")
        if response is None:
            raise _Failure("unresponsive_reward_error", failure or "no answer")
        if response.status_code >= 400:
            raise _Failure("other_error", f"the grader endpoint answered HTTP {response.status_code}: "
                                          f"{response.text[:500]}")
        return _reward(response.content)

    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = endpoint_client()
            return self._client


def _reward(content: bytes) -> float:
    """The reward in an answer: a JSON number, or an object's `reward`; in [0, 1]."""
    try:
        data = json.loads(content)
    except ValueError:
        raise _Failure("other_error", f"the grader endpoint's answer is not JSON: {content[:200]!r}") from None
    value = data.get("reward") if isinstance(data, dict) else data
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _Failure("other_error", 'the grader endpoint must answer a number or {"reward": number}, got '
                                      f"{json.dumps(data)[:200]}")
    if not 0.0 <= value <= 1.0:
        raise _Failure("other_error", f"the grader endpoint answered {value}, outside [0, 1]")
    return float(value)
