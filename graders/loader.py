"""Grader files (JSON, YAML, or a `.py` python grader) and whole-spec validation."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from graders.errors import GraderSpecError
from graders.formula import Formula, FormulaError
from graders.spec import parse_grader
from graders.templates import template_errors


def read_grader_file(path: str | Path) -> dict[str, Any]:
    """The grader JSON object a file holds; a `.py` file becomes a python grader named after the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GraderSpecError(f"cannot read grader file {path}: {exc.strerror or exc}") from None
    if path.suffix == ".py":
        return {"type": "python", "name": path.stem, "source": text}
    if path.suffix == ".json":
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise GraderSpecError(f"{path}: invalid JSON: {exc}") from None
    else:
        import yaml

        try:
            obj = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GraderSpecError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(obj, dict):
        raise GraderSpecError(f"{path}: a grader file must hold one JSON/YAML object")
    return obj


def load_grader_file(path: str | Path) -> Any:
    """Parse a grader file into a Grader spec (raises GraderSpecError)."""
    return parse_grader(read_grader_file(path))


def validate_grader(obj: Any) -> list[str]:
    """Every problem with a grader spec, each naming its field; an empty list means valid."""
    try:
        spec = parse_grader(obj)
    except GraderSpecError as exc:
        return [str(exc)]
    problems = list(template_errors(spec))
    problems += _deep_problems(spec, prefix="")
    return problems


def _deep_problems(spec: Any, prefix: str) -> list[str]:
    problems: list[str] = []
    if spec.type == "multi":
        try:
            formula = Formula(spec.calculate_output)
            unknown = sorted(formula.names - set(spec.graders))
            if unknown:
                problems.append(f"{prefix}calculate_output: unknown grader names {unknown}; "
                                f"the graders are {sorted(spec.graders)}")
        except FormulaError as exc:
            problems.append(f"{prefix}calculate_output: {exc}")
        for name, sub in spec.graders.items():
            problems += _deep_problems(sub, prefix=f"{prefix}graders.{name}.")
    elif spec.type == "python":
        problem = python_source_problem(spec.source)
        if problem:
            problems.append(f"{prefix}source: {problem}")
    elif spec.type == "text_similarity" and spec.evaluation_metric == "meteor":
        from graders.impl.similarity import MetricUnavailable, _require_wordnet

        try:
            _require_wordnet()
        except MetricUnavailable as exc:
            problems.append(f"{prefix}evaluation_metric: {exc}")
    return problems


def python_source_problem(source: str) -> str | None:
    """Why a python grader's source cannot work (it must compile and define grade), or None."""
    try:
        tree = ast.parse(source, filename="<grader>")
        compile(tree, "<grader>", "exec")
    except SyntaxError as exc:
        return f"does not compile: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"does not compile: {type(exc).__name__}: {exc}"
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "grade":
            if isinstance(node, ast.AsyncFunctionDef):
                return "grade must be a plain function, not async"
            if len(node.args.args) + len(node.args.posonlyargs) < 2 and node.args.vararg is None:
                return "grade must take two arguments: grade(sample, item)"
            return None
        if isinstance(node, (ast.Assign, ast.ImportFrom)) and _binds_grade(node):
            return None
    return "defines no top-level grade(sample, item) function"


def _binds_grade(node: ast.AST) -> bool:
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == "grade" for t in node.targets)
    if isinstance(node, ast.ImportFrom):
        return any((alias.asname or alias.name) == "grade" for alias in node.names)
    return False
