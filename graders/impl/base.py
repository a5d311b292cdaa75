"""What every grader implementation shares: the engine interface and the runtime it grades with."""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from graders.result import GraderResult
from graders.templates import SampleContext, TemplateSyntaxError, TemplateVariableError, compile_template


class Runtime:
    """Shared resources for grading: the python sandbox pool, judge settings, a thread pool."""

    def __init__(self, *, pool: Any = None, judge: dict[str, Any] | None = None,
                 max_workers: int | None = None) -> None:
        self._pool = pool
        self.judge_config = dict(judge or {})
        self.max_workers = max(1, max_workers or os.cpu_count() or 1)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._judges: dict[tuple[str, ...], Any] = {}

    @property
    def pool(self) -> Any:
        """The python grader pool (the process-wide default unless one was given)."""
        if self._pool is None:
            from graders.sandbox import default_pool

            self._pool = default_pool()
        return self._pool

    def map(self, fn: Any, items: Sequence[Any], concurrency: int | None = None) -> list[Any]:
        """fn over items, concurrently in threads when there is more than one."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(self.max_workers, concurrency or 0), thread_name_prefix="rft-grader"
                )
        return list(self._executor.map(fn, items))

    def judge(self, model: str) -> Any:
        """The judge backend for a model name (cached per resolved endpoint/model)."""
        from graders.impl.judges import judge_target, make_judge

        target = judge_target(model, self.judge_config)
        with self._lock:
            if target not in self._judges:
                self._judges[target] = make_judge(target)
            return self._judges[target]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for judge in self._judges.values():
            close = getattr(judge, "close", None)
            if close:
                close()
        self._judges.clear()


class Engine:
    """A compiled grader: `grade_batch` scores many samples and never raises."""

    name: str
    type: str

    def grade_batch(self, contexts: Sequence[SampleContext], runtime: Runtime) -> list[GraderResult]:
        raise NotImplementedError


def template_getter(source: str) -> Callable[[SampleContext], str]:
    """A fast render function; a template with bad syntax yields one raising invalid_variable_error."""
    try:
        return compile_template(source).getter()
    except TemplateSyntaxError as exc:
        message = str(exc)

        def invalid(ctx: SampleContext) -> str:
            raise TemplateVariableError(message)

        return invalid
