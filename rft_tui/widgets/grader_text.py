"""Turn a grader file's text (JSON, YAML or python source) into the grader dict the daemon runs."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

LANGUAGES = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".py": "python"}

NEW_GRADER_TEMPLATES = {
    "json": json.dumps({"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                        "reference": "{{item.answer}}", "operation": "eq"}, indent=2) + "\n",
    "yaml": ("type: string_check\nname: exact\ninput: '{{sample.output_text}}'\nreference: '{{item.answer}}'\n"
             "operation: eq\n"),
    "python": ('def grade(sample, item) -> float:\n'
               '    """1.0 when the output equals the reference answer, else 0.0."""\n'
               '    return float(sample["output_text"].strip() == str(item["answer"]).strip())\n'),
}


class GraderTextError(ValueError):
    """The text does not parse; the message says where (line:column)."""


def language_of(name: str) -> str | None:
    return LANGUAGES.get(PurePath(name).suffix.lower())


def grader_from_text(name: str, text: str) -> dict[str, Any]:
    """The grader dict; GraderTextError naming the line and column when the text does not parse."""
    lang = language_of(name)
    if lang == "python":
        return {"type": "python", "name": PurePath(name).stem, "source": text}
    if lang == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise GraderTextError(f"{name}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    elif lang == "yaml":
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
            raise GraderTextError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    else:
        raise GraderTextError(f"{name}: unknown grader file type (use .json, .yaml, .yml or .py)")
    if not isinstance(data, dict):
        raise GraderTextError(f"{name}: a grader file holds one object")
    return data
