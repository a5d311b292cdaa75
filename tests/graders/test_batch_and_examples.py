"""BatchGrader over the example graders, and the import boundary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from graders import BatchGrader, load_grader_file, run_grader

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_batch_results_keep_order_and_count_errors() -> None:
    spec = load_grader_file(EXAMPLES / "graders" / "multi_exact_partial.json")
    with BatchGrader(spec) as batch:
        result = batch.grade(["46", "45", "", "x"], [{"answer": "46"}, {"answer": "46"}, {"answer": "46"}, {}])
    assert result.rewards == [1.0, pytest.approx(0.25), 0.0, 0.0]
    assert result.sub_rewards["exact"] == [1.0, 0.0, 0.0, 0.0]
    assert result.errors == {"invalid_variable_error": 1, "exact.invalid_variable_error": 1,
                             "fuzzy.invalid_variable_error": 1}
    assert result.error_count == 1 and len(result.results) == 4


def test_batch_rejects_mismatched_lengths() -> None:
    with BatchGrader(load_grader_file(EXAMPLES / "graders" / "exact_match.json")) as batch:
        with pytest.raises(ValueError):
            batch.grade(["a"], [])
        assert batch.grade([], []).rewards == []


def test_arithmetic_demo_grader() -> None:
    spec = load_grader_file(EXAMPLES / "arithmetic" / "grader.json")
    assert run_grader(spec, "46", {"messages": [], "answer": "46"}).reward == 1.0
    assert run_grader(spec, "45", {"answer": "46"}).reward == pytest.approx(0.25)
    assert run_grader(spec, "146", {"answer": "46"}).reward == pytest.approx(0.4)
    assert run_grader(spec, "", {"answer": "46"}).reward == 0.0


@pytest.mark.parametrize(("output", "answer", "tolerance", "reward"), [
    ("The answer is 3.14159", "3.14159", None, 1.0),
    ("3.1416", "3.14159", 0.001, 1.0),
    ("1,000", "1000", None, 1.0),
    ("90", "100", None, pytest.approx(0.45)),
    ("250", "100", None, 0.0),
    ("no number", "5", None, 0.0),
])
def test_numeric_tolerance_example(output: str, answer: str, tolerance: float | None, reward: float) -> None:
    item = {"answer": answer} if tolerance is None else {"answer": answer, "tolerance": tolerance}
    result = run_grader(load_grader_file(EXAMPLES / "graders" / "numeric_tolerance.py"), output, item)
    assert not result.errors and result.reward == reward


@pytest.mark.parametrize(("output", "reward"), [
    ('["FBN1", "TGFBR2"]', 1.0),
    ("TGFBR2\nfbn1\nCOL3A1", 0.85),
    ("1. A, 2. B, 3. C, 4. D, 5. FBN1", pytest.approx(0.4)),
    (", ".join([f"G{i}" for i in range(1, 6)] + ["FBN1"]), pytest.approx(0.2)),
    (", ".join([f"G{i}" for i in range(1, 20)] + ["FBN1"]), pytest.approx(0.2 / 15)),
    (", ".join([f"G{i}" for i in range(1, 21)] + ["FBN1"]), 0.0),
    ('{"genes": ["X", "FBN1"]}', 0.85),
    ("", 0.0),
])
def test_gene_ranking_example(output: str, reward: float) -> None:
    result = run_grader(load_grader_file(EXAMPLES / "graders" / "gene_ranking.py"), output,
                        {"reference_answer": "FBN1"})
    assert not result.errors and result.reward == reward


def test_import_graders_pulls_in_nothing_heavy_or_ours() -> None:
    code = ("import sys, graders\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('daemon', 'rft_tui', 'torch', 'transformers', 'sentence_transformers', 'nltk', 'httpx'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_graders_source_never_imports_our_other_packages() -> None:
    import ast

    root = Path(__file__).resolve().parents[2] / "graders"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in ("daemon", "rft_tui"), f"{path} imports {name}"


@pytest.mark.parametrize(("output", "top_1", "top_5", "rank_credit"), [
    ('["FBN1", "TGFBR2"]', 1.0, 1.0, 1.0),
    ("TGFBR2\nfbn1\nCOL3A1", 0.0, 1.0, 0.85),
    ("1. A, 2. B, 3. C, 4. D, 5. FBN1", 0.0, 1.0, pytest.approx(0.4)),
    (", ".join([f"G{i}" for i in range(1, 6)] + ["FBN1"]), 0.0, 0.0, pytest.approx(0.2)),
    ("", 0.0, 0.0, 0.0),
])
def test_gene_ranking_multi_grader_reports_top_1_and_top_5(output: str, top_1: float, top_5: float,
                                                           rank_credit: float) -> None:
    """examples/gene-ranking/grader.json: top-1 and top-5 accuracy as sub-rewards; the reward is the rank credit."""
    result = run_grader(load_grader_file(EXAMPLES / "gene-ranking" / "grader.json"), output,
                        {"reference_answer": "FBN1"})
    assert not result.errors
    assert result.sub_rewards == {"top_1": top_1, "top_5": top_5, "rank_credit": rank_credit}
    assert result.reward == rank_credit


def test_gene_ranking_multi_grader_is_what_make_examples_writes() -> None:
    """The JSON holds gene_ranking.py's source (so editing the .py means running make_examples.py again)."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads((EXAMPLES / "gene-ranking" / "grader.json").read_text()) == module.gene_ranking_grader()
