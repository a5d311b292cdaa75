"""string_check: eq, ne, like (reference contained in input), ilike (the same, case-insensitive)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from graders.impl.base import Engine, Runtime, render_or_flag, template_or_error
from graders.result import GraderResult
from graders.spec import StringCheckGrader
from graders.templates import SampleContext

OPERATIONS = {
    "eq": lambda text, ref: text == ref,
    "ne": lambda text, ref: text != ref,
    "like": lambda text, ref: ref in text,
    "ilike": lambda text, ref: ref.casefold() in text.casefold(),
}


class StringCheckEngine(Engine):
    type = "string_check"

    def __init__(self, spec: StringCheckGrader) -> None:
        self.name = spec.name
        self.input = template_or_error(spec.input)
        self.reference = template_or_error(spec.reference)
        self.check = OPERATIONS[spec.operation]

    def grade_batch(self, contexts: Sequence[SampleContext], runtime: Runtime) -> list[GraderResult]:
        out = []
        name, check = self.name, self.check
        for ctx in contexts:
            start = time.perf_counter()
            text = render_or_flag(self.input, ctx, name, "string_check")
            if isinstance(text, GraderResult):
                out.append(text)
                continue
            ref = render_or_flag(self.reference, ctx, name, "string_check")
            if isinstance(ref, GraderResult):
                out.append(ref)
                continue
            reward = 1.0 if check(text, ref) else 0.0
            out.append(GraderResult(reward, name, "string_check", execution_time=time.perf_counter() - start))
        return out
