"""Spec parsing, grader files, and validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graders import GraderSpecError, load_grader_file, parse_grader, validate_grader

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

STRING_CHECK = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                "reference": "{{item.answer}}", "operation": "eq"}


def test_every_openai_grader_type_parses() -> None:
    specs: list[dict[str, Any]] = [
        STRING_CHECK,
        {"type": "text_similarity", "name": "t", "input": "a", "reference": "b", "evaluation_metric": "rouge_l",
         "pass_threshold": 0.5},
        {"type": "python", "name": "p", "source": "def grade(s, i):\n    return 1\n", "image_tag": "2025-05-08"},
        {"type": "score_model", "name": "s", "model": "gpt-4o-mini", "range": [0, 10],
         "sampling_params": {"temperature": 0, "seed": 1, "max_completions_tokens": 50},
         "input": [{"role": "system", "content": "Grade it"},
                   {"role": "user", "type": "message",
                    "content": [{"type": "input_text", "text": "{{sample.output_text}}"},
                                {"type": "input_image", "image_url": "{{item.url}}", "detail": "low"}]}]},
        {"type": "label_model", "name": "l", "model": "m", "input": [{"role": "user", "content": "x"}],
         "labels": ["good", "bad"], "passing_labels": ["good"]},
        {"type": "multi", "name": "m", "graders": {"a": STRING_CHECK}, "calculate_output": "a"},
    ]
    for obj in specs:
        spec = parse_grader(obj)
        assert spec.type == obj["type"]
        assert validate_grader(obj) == []


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ({**STRING_CHECK, "operation": "equals"}, "operation"),
        ({k: v for k, v in STRING_CHECK.items() if k != "reference"}, "reference"),
        ({**STRING_CHECK, "typo": 1}, "typo"),
        ({"type": "nope", "name": "x"}, "nope"),
        ({"type": "multi", "name": "m", "calculate_output": "a",
          "graders": {"a": {**STRING_CHECK, "operation": "bad"}}}, "graders.a.operation"),
        ({"type": "score_model", "name": "s", "model": "m", "input": [], "range": [1, 0]}, "range"),
        ({"type": "label_model", "name": "l", "model": "m", "input": [], "labels": ["a"],
          "passing_labels": ["b"]}, "passing_labels"),
        ({"type": "python", "name": "p", "source": "#" * (256 * 1024 + 1)}, "256 kB"),
        # JSON types as declared (schemathesis found `false` accepted as a number): no bool-as-float, no "1"
        ({"type": "label_model", "name": "l", "model": "m", "input": [], "labels": ["a"], "passing_labels": ["a"],
          "sampling_params": {"top_p": False}}, "top_p"),
        ({"type": "score_model", "name": "s", "model": "m", "input": [], "pass_threshold": "0.5"}, "pass_threshold"),
        ({"type": "score_model", "name": "s", "model": "m", "input": [], "range": [True, 10]}, "range"),
    ],
)
def test_bad_specs_name_the_field(obj: dict, fragment: str) -> None:
    with pytest.raises(GraderSpecError) as info:
        parse_grader(obj)
    assert fragment in str(info.value)
    assert validate_grader(obj) and fragment in validate_grader(obj)[0]


def test_parse_rejects_non_objects() -> None:
    with pytest.raises(GraderSpecError):
        parse_grader(["not", "a", "grader"])


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ({"type": "multi", "name": "m", "graders": {"a": STRING_CHECK}, "calculate_output": "a + b"}, "['b']"),
        ({"type": "multi", "name": "m", "graders": {"a": STRING_CHECK}, "calculate_output": "a +"}, "calculate_output"),
        ({"type": "multi", "name": "m", "graders": {"a": STRING_CHECK}, "calculate_output": "__import__('os')"},
         "calculate_output"),
        ({"type": "python", "name": "p", "source": "def grade(s, i)\n  return 1"}, "does not compile"),
        ({"type": "python", "name": "p", "source": "def score(s, i):\n  return 1"}, "grade"),
        ({"type": "python", "name": "p", "source": "def grade(s):\n  return 1"}, "two arguments"),
        ({**STRING_CHECK, "input": "{{answer}}"}, "input"),
        ({**STRING_CHECK, "reference": "{{ item.a[x] }}"}, "reference"),
        ({"type": "multi", "name": "m", "calculate_output": "p",
          "graders": {"p": {"type": "python", "name": "p", "source": "x = 1"}}}, "graders.p.source"),
    ],
)
def test_validate_finds_deep_problems(obj: dict, fragment: str) -> None:
    problems = validate_grader(obj)
    assert problems, obj
    assert any(fragment in p for p in problems), problems


def test_grader_files_json_yaml_and_py(tmp_path: Path) -> None:
    (tmp_path / "g.json").write_text(json.dumps(STRING_CHECK))
    (tmp_path / "g.yaml").write_text("type: string_check\nname: exact\ninput: '{{sample.output_text}}'\n"
                                     "reference: '{{item.answer}}'\noperation: eq\n")
    (tmp_path / "my_grader.py").write_text("def grade(sample, item):\n    return 1.0\n")
    assert load_grader_file(tmp_path / "g.json") == load_grader_file(tmp_path / "g.yaml")
    py = load_grader_file(tmp_path / "my_grader.py")
    assert py.type == "python" and py.name == "my_grader" and "def grade" in py.source
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(GraderSpecError, match="bad.json:1:2: not valid JSON"):
        load_grader_file(tmp_path / "bad.json")
    with pytest.raises(GraderSpecError, match="cannot read"):
        load_grader_file(tmp_path / "missing.json")


def test_example_graders_are_valid() -> None:
    paths = sorted((EXAMPLES / "graders").iterdir()) + [EXAMPLES / "arithmetic" / "grader.json"]
    assert len(paths) >= 5
    for path in paths:
        from graders import read_grader_file

        assert validate_grader(read_grader_file(path)) == [], path
