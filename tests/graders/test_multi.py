"""The multi grader and its formula language."""

from __future__ import annotations

import math

import pytest

from graders import run_grader
from graders.formula import Formula, FormulaError, FormulaEvaluationError

EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
         "operation": "eq"}
FUZZY = {"type": "text_similarity", "name": "fuzzy", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match"}


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("a + b", 3.0),
        ("a - b * 2", -3.0),
        ("(a + b) / 2", 1.5),
        ("b ^ 2", 4.0),
        ("a + b ^ 3", 9.0),  # ^ binds tighter than +
        ("-a + 4", 3.0),
        ("2 ^ -1", 0.5),
        ("min(a, b) + max(a, b, 10)", 11.0),
        ("abs(a - b) + floor(2.7) + ceil(0.2)", 4.0),
        ("exp(0) + sqrt(16) + log(1)", 5.0),
        ("0.25*a+.75*b", 1.75),
    ],
)
def test_formula_values(formula: str, expected: float) -> None:
    assert Formula(formula).evaluate({"a": 1.0, "b": 2.0}) == pytest.approx(expected)


@pytest.mark.parametrize(
    "formula",
    ["", "a +", "a.b", "__import__('os').system('x')", "a if b else 1", "lambda: 1", "[a]", "a[0]", "'text'",
     "a and b", "a < b", "pow(a, 2)", "min", "min(key=a)", "a; b", "a = 1", "a % 2", "a // 2", "True", "f'{a}'"],
)
def test_formula_rejects_everything_else(formula: str) -> None:
    with pytest.raises(FormulaError):
        Formula(formula)


@pytest.mark.parametrize("formula", ["a / 0", "log(0)", "sqrt(-1)", "(-1) ^ 0.5", "10 ^ 400", "exp(1000)"])
def test_formula_math_errors(formula: str) -> None:
    with pytest.raises(FormulaEvaluationError):
        Formula(formula).evaluate({"a": 1.0})


def multi(formula: str, **graders: dict) -> dict:
    return {"type": "multi", "name": "m", "graders": graders or {"exact": EXACT, "fuzzy": FUZZY},
            "calculate_output": formula}


def test_multi_combines_sub_rewards() -> None:
    spec = multi("exact + (1 - exact) * 0.5 * fuzzy")
    hit = run_grader(spec, "46", {"answer": "46"})
    miss = run_grader(spec, "45", {"answer": "46"})
    assert hit.reward == 1.0 and hit.sub_rewards == {"exact": 1.0, "fuzzy": 1.0}
    assert miss.reward == pytest.approx(0.25) and miss.sub_rewards == {"exact": 0.0, "fuzzy": pytest.approx(0.5)}
    assert hit.to_dict()["metadata"]["type"] == "multi"


def test_multi_formula_parse_error_is_flagged() -> None:
    for formula in ("exact +", "exact + nope", "exact.__class__"):
        result = run_grader(multi(formula), "46", {"answer": "46"})
        assert result.reward == 0.0 and "formula_parse_error" in result.errors, formula


def test_multi_division_by_zero_scores_zero() -> None:
    result = run_grader(multi("exact / (fuzzy - 1)"), "46", {"answer": "46"})
    assert result.reward == 0.0 and result.errors == {"other_error"}
    assert math.isfinite(result.to_dict()["reward"])


def test_multi_sub_grader_error_scores_that_part_zero_and_is_flagged() -> None:
    broken = {**FUZZY, "reference": "{{item.missing}}"}
    result = run_grader(multi("0.5 * exact + 0.5 * fuzzy", exact=EXACT, fuzzy=broken), "46", {"answer": "46"})
    assert result.reward == pytest.approx(0.5)
    assert result.sub_rewards == {"exact": 1.0, "fuzzy": 0.0}
    assert result.errors == {"invalid_variable_error"}
    assert result.sub_results["fuzzy"].errors == {"invalid_variable_error"}
