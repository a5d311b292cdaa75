"""The grader editor's languages and new-file templates; a file's text becomes a grader dict via `graders.loader`."""

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
    """The grader dict (read by `graders.loader`); GraderTextError naming the line and column."""
    from graders.errors import GraderFileError
    from graders.loader import parse_grader_text

    try:
        return parse_grader_text(text, name)
    except GraderFileError as e:
        raise GraderTextError(str(e)) from None
