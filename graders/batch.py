"""Grading one sample (`run_grader`) or many (`BatchGrader`, the training loop's path)."""

from __future__ import annotations

import gc
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from graders.engine import compile_grader
from graders.impl.base import Engine, Runtime
from graders.result import GraderResult
from graders.sandbox import PythonGraderPool, SandboxLimits
from graders.spec import parse_grader
from graders.templates import SampleContext

_ENGINE_CACHE: dict[int, tuple[Any, Engine]] = {}
_ENGINE_LOCK = threading.Lock()
_SHARED_RUNTIME = Runtime()


def engine_for(grader: Any) -> tuple[Any, Engine]:
    """(spec, compiled engine) for a spec or dict, compiled once per spec object."""
    spec = parse_grader(grader)
    with _ENGINE_LOCK:
        cached = _ENGINE_CACHE.get(id(spec))
        if cached is not None and cached[0] is spec:
            return cached
    engine = compile_grader(spec)
    with _ENGINE_LOCK:
        if len(_ENGINE_CACHE) > 256:
            _ENGINE_CACHE.clear()
        _ENGINE_CACHE[id(spec)] = (spec, engine)
    return spec, engine


def grade_contexts(engine: Engine, contexts: list[SampleContext], runtime: Runtime) -> list[GraderResult]:
    """engine.grade_batch, with any unexpected failure turned into flagged zero rewards."""
    try:
        results = engine.grade_batch(contexts, runtime)
        if len(results) == len(contexts):
            return results
        problem = f"grader returned {len(results)} results for {len(contexts)} samples"
    except Exception as exc:  # noqa: BLE001 - grading never raises into the caller
        problem = f"{type(exc).__name__}: {exc}"
    return [GraderResult.failure(engine.name, engine.type, "other_error", problem) for _ in contexts]


def run_grader(grader: Any, sample: str | dict[str, Any], item: dict[str, Any] | None = None, *,
               judge: dict[str, Any] | None = None) -> GraderResult:
    """Grade one sample (a string is the output_text). Raises only GraderSpecError for a bad spec."""
    _, engine = engine_for(grader)
    runtime = Runtime(judge=judge, pool=None) if judge else _SHARED_RUNTIME
    try:
        return grade_contexts(engine, [SampleContext(sample, item)], runtime)[0]
    finally:
        if runtime is not _SHARED_RUNTIME:
            runtime.close()


@dataclass
class BatchResult:
    """Rewards for a batch, in input order, with per-flag error counts."""

    rewards: list[float]
    sub_rewards: dict[str, list[float]]
    errors: dict[str, int]
    results: list[GraderResult] = field(repr=False)

    @property
    def error_count(self) -> int:
        """How many samples had any error (each scored 0 for the failing part)."""
        return sum(1 for r in self.results if r.errors)


def summarize(results: list[GraderResult]) -> BatchResult:
    """Collect rewards, sub-rewards and error counts ("flag" and "sub_grader.flag")."""
    errors: Counter[str] = Counter()
    sub_rewards: dict[str, list[float]] = {}
    for result in results:
        if result.errors:
            errors.update(result.errors)
            for name, sub in result.sub_results.items():
                errors.update(f"{name}.{flag}" for flag in sub.errors)
        if result.sub_rewards:
            for name, value in result.sub_rewards.items():
                sub_rewards.setdefault(name, []).append(float(value))
    return BatchResult(
        rewards=[r.reward for r in results],
        sub_rewards=sub_rewards,
        errors=dict(errors),
        results=results,
    )


class BatchGrader:
    """Grade many samples with one grader: declarative graders inline, python graders on a warm
    sandbox pool (sized to the CPU count) in parallel, judge calls concurrently."""

    def __init__(self, grader: Any, max_workers: int | None = None, *, judge: dict[str, Any] | None = None,
                 limits: SandboxLimits | None = None) -> None:
        self.spec, self.engine = engine_for(grader)
        self._pool: PythonGraderPool | None = None
        if _uses_python(self.spec):
            self._pool = PythonGraderPool(size=max_workers, limits=limits)
        self.runtime = Runtime(pool=self._pool, judge=judge, max_workers=max_workers)

    def grade(self, samples: Sequence[str | dict[str, Any]], items: Sequence[dict[str, Any] | None]) -> BatchResult:
        """Rewards for samples[i] against items[i]; never raises for grading errors."""
        if len(samples) != len(items):
            raise ValueError(f"{len(samples)} samples but {len(items)} items")
        # Pausing the cyclic GC while building ~3 objects per sample roughly doubles throughput;
        # none of them form cycles, so nothing is lost by collecting afterwards.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            contexts = [SampleContext(sample, item) for sample, item in zip(samples, items, strict=True)]
            return summarize(grade_contexts(self.engine, contexts, self.runtime))
        finally:
            if was_enabled:
                gc.enable()

    def close(self) -> None:
        """Stop the sandbox workers and judge clients."""
        self.runtime.close()
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> BatchGrader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _uses_python(spec: Any) -> bool:
    if spec.type == "python":
        return True
    return spec.type == "multi" and any(sub.type == "python" for sub in spec.graders.values())
