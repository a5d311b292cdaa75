"""python graders: `grade(sample, item)` run in the sandboxed warm pool, batched per worker round-trip."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from graders.impl.base import Engine, Runtime
from graders.result import GraderResult
from graders.sandbox import CallOutcome
from graders.spec import PythonGrader
from graders.templates import SampleContext

#: Calls sent per worker round-trip; big enough to amortise the pipe, small enough to spread over workers.
MAX_CHUNK = 256


class PythonEngine(Engine):
    """Reward = grade()'s value; outside [0, 1] it is clamped and flagged (python_grader_out_of_range_error);
    errors are flagged as OpenAI flags them. Each result says which sandbox the grader ran in."""

    type = "python"

    def __init__(self, spec: PythonGrader) -> None:
        self.name = spec.name
        self.source = spec.source

    def grade_batch(self, contexts: Sequence[SampleContext], runtime: Runtime) -> list[GraderResult]:
        if not contexts:
            return []
        pool = runtime.pool
        calls = [(ctx.sample_dict(), ctx.item) for ctx in contexts]
        workers = max(1, getattr(pool, "size", 1))
        size = max(1, min(MAX_CHUNK, math.ceil(len(calls) / workers)))
        chunks = [calls[i:i + size] for i in range(0, len(calls), size)]

        def run(chunk: list[tuple[object, object]]) -> tuple[list[CallOutcome], float]:
            start = time.perf_counter()
            outcomes = pool.grade(self.source, chunk)
            return outcomes, (time.perf_counter() - start) / max(1, len(chunk))

        mode = getattr(pool, "mode", None)
        sandbox = None if mode is None or mode.startswith("unavailable") else mode
        results: list[GraderResult] = []
        for outcomes, each in runtime.map(run, chunks, concurrency=workers):
            results.extend(self._result(outcome, each, sandbox) for outcome in outcomes)
        return results

    def _result(self, outcome: CallOutcome, elapsed: float, sandbox: str | None) -> GraderResult:
        if outcome.error is None and outcome.value is not None:
            value = outcome.value
            result = GraderResult(min(1.0, max(0.0, value)), self.name, self.type, execution_time=elapsed)
            if not 0.0 <= value <= 1.0:
                result.flag("python_grader_out_of_range_error",
                            f"grade() returned {value!r}, outside [0, 1]; clamped to {result.reward}")
            result.sandbox = sandbox
            return result
        result = GraderResult(0.0, self.name, self.type, execution_time=elapsed)
        result.sandbox = sandbox
        details = outcome.details or ""
        if outcome.stdout:
            details += "\n--- grader output ---\n" + outcome.stdout[-2000:]
        if outcome.error == "timeout":
            result.flag("unresponsive_reward_error", details)
        elif outcome.error == "server":
            result.flag("python_grader_server_error", outcome.error_type or "WorkerError")
            result.add_detail("other_error_details", details)
        else:
            result.flag("python_grader_runtime_error", details)
        return result
