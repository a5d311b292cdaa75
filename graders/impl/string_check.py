"""string_check: eq, ne, like (reference contained in input), ilike (the same, case-insensitive)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from graders.impl.base import Engine, Runtime, template_getter
from graders.result import GraderResult
from graders.spec import StringCheckGrader
from graders.templates import SampleContext, TemplateVariableError

OPERATIONS: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda text, ref: text == ref,
    "ne": lambda text, ref: text != ref,
    "like": lambda text, ref: ref in text,
    "ilike": lambda text, ref: ref.casefold() in text.casefold(),
}


class StringCheckEngine(Engine):
    type = "string_check"

    def __init__(self, spec: StringCheckGrader) -> None:
        self.name = spec.name
        self.input = template_getter(spec.input)
        self.reference = template_getter(spec.reference)
        self.operation = spec.operation

    def grade_batch(self, contexts: Sequence[SampleContext], runtime: Runtime) -> list[GraderResult]:
        out: list[GraderResult] = []
        append = out.append
        name, get_input, get_reference = self.name, self.input, self.reference
        check = OPERATIONS[self.operation]
        is_eq = self.operation == "eq"
        start = time.perf_counter()
        for ctx in contexts:
            try:
                text = get_input(ctx)
                ref = get_reference(ctx)
            except TemplateVariableError as exc:
                append(GraderResult.failure(name, "string_check", exc.flag, str(exc)))
                continue
            append(GraderResult(1.0 if (text == ref if is_eq else check(text, ref)) else 0.0, name, "string_check"))
        each = (time.perf_counter() - start) / max(1, len(out))  # too fast to time one by one
        for result in out:
            result.execution_time = each
        return out
