"""multi: named sub-graders combined by `calculate_output`.

A sub-grader's error makes its sub-reward 0 (the formula still runs) and is reported in the multi
result's error flags; a formula that does not parse or names unknown graders flags
formula_parse_error; one that cannot be computed (division by zero, log(0)) scores 0 with other_error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from graders.formula import Formula, FormulaError, FormulaEvaluationError
from graders.impl.base import Engine, Runtime
from graders.result import GraderResult
from graders.spec import MultiGrader
from graders.templates import SampleContext


class MultiEngine(Engine):
    type = "multi"

    def __init__(self, spec: MultiGrader, compile_sub: Callable[[object], Engine]) -> None:
        self.name = spec.name
        self.subs = {name: compile_sub(sub) for name, sub in spec.graders.items()}
        self.formula: Formula | None = None
        self.formula_error: str | None = None
        try:
            self.formula = Formula(spec.calculate_output)
            unknown = sorted(self.formula.names - set(self.subs))
            if unknown:
                self.formula_error = f"calculate_output uses unknown grader names {unknown}; known: {sorted(self.subs)}"
        except FormulaError as exc:
            self.formula_error = str(exc)

    def grade_batch(self, contexts: Sequence[SampleContext], runtime: Runtime) -> list[GraderResult]:
        start = time.perf_counter()
        per_sub = {name: engine.grade_batch(contexts, runtime) for name, engine in self.subs.items()}
        each = (time.perf_counter() - start) / max(1, len(contexts))
        return [self._combine({name: results[i] for name, results in per_sub.items()}, each)
                for i in range(len(contexts))]

    def _combine(self, subs: dict[str, GraderResult], elapsed: float) -> GraderResult:
        rewards = {name: r.reward for name, r in subs.items()}
        result = GraderResult(0.0, self.name, self.type, execution_time=elapsed, sub_rewards=rewards,
                              scores=dict(rewards))
        result.sub_results = subs
        usage: dict[str, dict[str, int]] = {}
        tokens = 0
        for sub in subs.values():
            if sub.errors:
                result.errors |= sub.errors
                for key, value in sub.details.items():
                    result.add_detail(key, value)
            tokens += sub.token_usage or 0
            result.sampled_model_name = result.sampled_model_name or sub.sampled_model_name
            for model, counts in sub.model_grader_token_usage_per_model.items():
                merged = usage.setdefault(model, {})
                for key, value in counts.items():
                    merged[key] = merged.get(key, 0) + value
        result.token_usage = tokens or None
        result.model_grader_token_usage_per_model = usage
        if self.formula is None or self.formula_error:
            result.flag("formula_parse_error")
            result.add_detail("other_error_details", self.formula_error or "formula error")
            return result
        try:
            result.reward = self.formula.evaluate(rewards)
        except FormulaEvaluationError as exc:
            result.flag("other_error", f"calculate_output: {exc}")
        return result
