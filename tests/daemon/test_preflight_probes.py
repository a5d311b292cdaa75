"""Pre-flight that tries to fool the grader (daemon/worker/probes.py): the signal map and the gameability probes,
graded by the real graders (python ones in the bubblewrap sandbox). The full pre-flight on the built-in model
is in tests/training/test_training.py."""

from __future__ import annotations

from typing import Any

import pytest

import graders
from daemon.worker.probes import PROBES, gameability, signal_map

ROWS = [({"answer": str(2 * a + 1)}, f"{a}+{a + 1}=") for a in range(10, 22)]
ITEMS = [item for item, _ in ROWS]
PROMPTS = [prompt for _, prompt in ROWS]
NON_EMPTY = {"type": "python", "name": "non_empty",
             "source": "def grade(sample, item):\n    return 1.0 if sample['output_text'].strip() else 0.0\n"}
EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
         "operation": "eq"}
CONTAINS = {"type": "string_check", "name": "contains", "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}", "operation": "like"}


def grade_with(spec: dict[str, Any]) -> Any:
    batch = graders.BatchGrader(graders.parse_grader(spec))

    def grade(outputs: list[str], items: list[dict[str, Any]]) -> list[float]:
        return [float(r) for r in batch.grade(outputs, items).rewards]

    grade.close = batch.close  # type: ignore[attr-defined]
    return grade


@pytest.mark.parametrize(("spec", "fooled_by"), [
    (NON_EMPTY, {"repetition", "prompt_echo", "item_json", "dont_know", "wrong_answer"}),
    (CONTAINS, {"item_json"}),
    (EXACT, set()),
])
def test_probes_flag_graders_that_pay_for_not_solving_the_task(spec: dict[str, Any], fooled_by: set[str]) -> None:
    grade = grade_with(spec)
    try:
        probes, warning = gameability(grade, PROMPTS, ITEMS, base_mean=0.35)
    finally:
        grade.close()
    assert [p.name for p in probes] == list(PROBES)  # every probe graded against every row
    assert {p.name for p in probes if p.reaches_base} == fooled_by
    by_name = {p.name: p for p in probes}
    assert by_name["empty"].reward_mean == 0.0
    if fooled_by:
        assert warning and "can be fooled" in warning and "0.35" in warning
        assert all(PROBES[name][0] in warning for name in fooled_by)
    else:
        assert warning is None
    assert by_name["wrong_answer"].example.isdigit() and by_name["wrong_answer"].example != ITEMS[0]["answer"]
    assert '"answer"' in by_name["item_json"].example and by_name["prompt_echo"].example == PROMPTS[0]


def test_a_probe_that_scores_nothing_never_reaches_a_zero_base() -> None:
    grade = grade_with(EXACT)
    try:
        probes, warning = gameability(grade, PROMPTS, ITEMS, base_mean=0.0)
    finally:
        grade.close()
    assert warning is None and not any(p.reaches_base for p in probes)


def test_wrong_answer_probe_needs_references_that_differ() -> None:
    grade = grade_with(NON_EMPTY)
    try:
        probes, _ = gameability(grade, PROMPTS[:3], [{"note": "x"}] * 3, base_mean=0.5)
    finally:
        grade.close()
    assert "wrong_answer" not in {p.name for p in probes}


def test_signal_map_lists_rows_without_signal() -> None:
    rows = signal_map([4, 9, 17], ["a", "b\nc", "d"], [[1.0, 1.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.0, 0.0]])
    assert [(r.row, r.signal, r.spread) for r in rows] == [(4, False, 0.0), (9, True, 1.0), (17, False, 0.0)]
    assert rows[1].mean == pytest.approx(0.5) and rows[1].prompt == "b ⏎ c"
