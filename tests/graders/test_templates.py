"""Template rendering over plain data, and which item fields a grader needs."""

from __future__ import annotations

import pytest

from graders import run_grader, template_item_fields
from graders.templates import SampleContext, TemplateSyntaxError, TemplateVariableError, render

ITEM = {"answer": "42", "a": {"b": {"c": "deep"}}, "list": ["zero", {"x": 1}], "n": 7, "none": None, "ok": True}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{item.answer}}", "42"),
        ("{{ item.answer }}", "42"),
        ("answer: {{item.answer}}!", "answer: 42!"),
        ("{{item.a.b.c}}", "deep"),
        ("{{ item.list.0 }}", "zero"),
        ("{{item.list[1].x}}", "1"),
        ("{{item.list.-1.x}}", "1"),
        ('{{ item["answer"] }}', "42"),
        ("{{item.n}}", "7"),
        ("{{item.none}}", "null"),
        ("{{item.ok}}", "true"),
        ("{{item.a.b}}", '{"c": "deep"}'),
        ("no templates here", "no templates here"),
        ("{single brace}", "{single brace}"),
        ("{{sample.output_text}}", '{"x": {"y": ["ü", 2]}}'),
        ("{{sample.output_json.x.y.0}}", "ü"),
        ("{{sample.output_json.x.y.1}}", "2"),
    ],
)
def test_render(template: str, expected: str) -> None:
    ctx = SampleContext('{"x": {"y": ["ü", 2]}}', ITEM)
    assert render(template, ctx) == expected


@pytest.mark.parametrize("template", ["{{item.missing}}", "{{item.a.b.nope}}", "{{item.list.5}}", "{{item.answer.x}}",
                                      "{{sample.output_json.nope}}", "{{sample.unknown}}"])
def test_missing_variables_raise_lookup_with_flag(template: str) -> None:
    with pytest.raises(TemplateVariableError) as info:
        render(template, SampleContext('{"x": 1}', ITEM))
    assert info.value.flag == "invalid_variable_error"


def test_output_json_that_does_not_parse_is_a_sample_parse_error() -> None:
    with pytest.raises(TemplateVariableError) as info:
        render("{{sample.output_json.x}}", SampleContext("not json", {}))
    assert info.value.flag == "sample_parse_error"
    spec = {"type": "string_check", "name": "j", "input": "{{sample.output_json.answer}}", "reference": "4",
            "operation": "eq"}
    result = run_grader(spec, "not json {", {})
    assert result.reward == 0.0 and result.errors == {"sample_parse_error"}
    assert run_grader(spec, '{"answer": "4"}', {}).reward == 1.0
    assert run_grader(spec, {"output_text": "ignored", "output_json": {"answer": "4"}}, {}).reward == 1.0


@pytest.mark.parametrize("template", ["{{answer}}", "{{item}}", "{{ item.a[b] }}", "{{os.system}}",
                                      "{{item.__class__.__init__()}}"])
def test_bad_syntax(template: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        render(template, SampleContext("", ITEM))


def test_attribute_access_is_only_a_dict_lookup() -> None:
    # `__class__` is looked up as a dict key, never as a Python attribute.
    with pytest.raises(TemplateVariableError):
        render("{{item.answer.__class__}}", SampleContext("", ITEM))


def test_missing_variable_in_a_grader_is_flagged_not_raised() -> None:
    spec = {"type": "string_check", "name": "e", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
            "operation": "eq"}
    result = run_grader(spec, "42", {"other": 1})
    assert result.reward == 0.0
    assert result.to_dict()["metadata"]["errors"]["invalid_variable_error"] is True


def test_template_item_fields_recurses() -> None:
    spec = {
        "type": "multi", "name": "m", "calculate_output": "a + b + c",
        "graders": {
            "a": {"type": "string_check", "name": "a", "input": "{{sample.output_json.x}}",
                  "reference": "{{item.answer}}", "operation": "eq"},
            "b": {"type": "score_model", "name": "b", "model": "m",
                  "input": [{"role": "user", "content": "Q: {{ item.question }} A: {{sample.output_text}}"},
                            {"role": "user", "content": [{"type": "input_text", "text": "{{item.meta.level}}"},
                                                         {"type": "input_image", "image_url": "{{item.img}}"}]}]},
            "c": {"type": "python", "name": "c", "source": "def grade(s, i):\n    return i['hidden']\n"},
        },
    }
    assert template_item_fields(spec) == {"answer", "question", "meta", "img"}
    assert template_item_fields({"type": "python", "name": "p", "source": "def grade(s, i): return 1"}) == set()
