"""Compile a grader spec into its implementation (templates and formulas parsed once)."""

from __future__ import annotations

from typing import Any

from graders.impl.base import Engine
from graders.impl.endpoint import EndpointEngine
from graders.impl.model import LabelModelEngine, ScoreModelEngine
from graders.impl.multi import MultiEngine
from graders.impl.python import PythonEngine
from graders.impl.similarity import TextSimilarityEngine
from graders.impl.string_check import StringCheckEngine


def compile_grader(spec: Any) -> Engine:
    """The engine for a parsed spec (see graders.spec)."""
    kind = spec.type
    if kind == "string_check":
        return StringCheckEngine(spec)
    if kind == "text_similarity":
        return TextSimilarityEngine(spec)
    if kind == "python":
        return PythonEngine(spec)
    if kind == "score_model":
        return ScoreModelEngine(spec)
    if kind == "label_model":
        return LabelModelEngine(spec)
    if kind == "endpoint":
        return EndpointEngine(spec)
    if kind == "multi":
        return MultiEngine(spec, compile_grader)
    raise ValueError(f"unknown grader type {kind!r}")
