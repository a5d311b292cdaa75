"""The one reader of grader files (JSON, YAML, or a `.py` python grader) and whole-spec validation.

The daemon (saving and listing `$RFT_HOME/graders`), the CLI (`-g/--grader`, `graders validate`) and the
TUI (editor, new-job form) all read grader files here, so a file means the same everywhere and every
problem is reported the same way: `FILE:LINE:COLUMN: what is wrong` (GraderFileError).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path, PurePath
from typing import Any

from graders.errors import FieldPath, GraderFileError, GraderSpecError
from graders.formula import Formula, FormulaError
from graders.spec import Grader, format_field_path, parse_grader
from graders.templates import template_errors

#: Grader file formats by (lower-case) suffix.
GRADER_FILE_FORMATS: dict[str, str] = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".py": "python"}


def grader_file_format(name: str) -> str | None:
    """`json`, `yaml` or `python` for a grader file name, None for any other suffix."""
    return GRADER_FILE_FORMATS.get(PurePath(name).suffix.lower())


def parse_grader_text(text: str, name: str) -> dict[str, Any]:
    """The grader JSON object a file's text holds (syntax only; see `load_grader_text` for the spec).

    A `.py` file becomes a python grader named after the file. Raises GraderFileError with the line
    and column when the text does not parse.
    """
    fmt = grader_file_format(name)
    if fmt == "python":
        _check_python_syntax(text, name)
        return {"type": "python", "name": PurePath(name).stem, "source": text}
    if fmt == "json":
        data = _parse_json(text, name)
    elif fmt == "yaml":
        data = _parse_yaml(text, name)
    else:
        raise GraderFileError(name, f"unknown grader file type {PurePath(name).suffix!r} "
                                    f"(use {', '.join(GRADER_FILE_FORMATS)})")
    if not isinstance(data, dict):
        raise GraderFileError(name, f"a grader file holds one {fmt.upper()} object, not {_kind(data)}", 1, 1)
    return data


def load_grader_text(text: str, name: str) -> Grader:
    """The validated grader spec a file's text holds; GraderFileError naming the line or the field."""
    data = parse_grader_text(text, name)
    try:
        return parse_grader(data)
    except GraderSpecError as exc:
        raise _located(exc, text, name) from None


def read_grader_file(path: str | Path) -> dict[str, Any]:
    """The grader JSON object a file holds (syntax only); GraderFileError when unreadable or unparsable."""
    return parse_grader_text(_read_text(Path(path)), str(path))


def load_grader_file(path: str | Path) -> Grader:
    """The validated grader spec a file holds; GraderFileError naming file, line and column or field."""
    return load_grader_text(_read_text(Path(path)), str(path))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GraderFileError(str(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise GraderFileError(str(path), f"cannot read grader file: {exc.strerror or exc}") from None


def _check_python_syntax(text: str, name: str) -> None:
    try:
        compile(text, name, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise GraderFileError(name, f"Python syntax error: {exc.msg}", exc.lineno, exc.offset) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        raise GraderFileError(name, f"Python source does not compile: {type(exc).__name__}: {exc}") from None


def _parse_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GraderFileError(name, f"not valid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except RecursionError:
        raise GraderFileError(name, "not valid JSON: nested too deeply") from None


def _parse_yaml(text: str, name: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        raise GraderFileError(name, f"not valid YAML: {problem}", mark.line + 1 if mark else None,
                              mark.column + 1 if mark else None) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise GraderFileError(name, f"not valid YAML: {exc}") from None


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "an empty document"}.get(type(value), type(value).__name__)


def _located(exc: GraderSpecError, text: str, name: str) -> GraderFileError:
    """A spec error as a file error: the first problem's field path, and its line and column if found."""
    field = exc.fields[0] if exc.fields else ()
    line, column = _field_position(text, name, field) if field else (None, None)
    return GraderFileError(name, str(exc), line, column, field=format_field_path(field))


def _field_position(text: str, name: str, field: FieldPath) -> tuple[int | None, int | None]:
    """Where a field (or its nearest existing parent) starts in JSON/YAML text; best effort.

    JSON is (nearly) YAML, so one YAML node walk serves both; a text PyYAML cannot compose gives None.
    """
    if grader_file_format(name) not in ("json", "yaml"):
        return None, None
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return None, None
    mark = node.start_mark if node is not None else None
    for part in field:
        child = _child(node, part)
        if child is None:
            break
        key_node, node = child
        mark = (key_node or node).start_mark
    return (mark.line + 1, mark.column + 1) if mark else (None, None)


def _child(node: Any, part: str | int) -> tuple[Any, Any] | None:
    """(key node, value node) of a mapping key or (None, item) of a sequence index; None if absent."""
    import yaml

    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        return next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return None, node.value[part]
    return None


def grader_file_problems(text: str, name: str) -> list[str]:
    """Every problem with a grader file's text, each naming the file (and line and column, or field).

    Syntax first (nothing else can be checked then), then the spec's structure, then what `validate_grader`
    finds beyond it (formulas, python source, templates). An empty list means the file is a valid grader.
    """
    try:
        spec = load_grader_text(text, name)
    except GraderFileError as exc:
        return [str(exc)]
    return [f"{name}: {problem}" for problem in validate_grader(spec)]


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
