"""The one grader-file reader: every way a file can be wrong is named by file, line and column (or field)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from graders import (
    GraderFileError,
    GraderSpecError,
    grader_file_problems,
    load_grader_file,
    load_grader_text,
    needs_heavy_libraries,
    parse_grader_text,
)

EXACT_YAML = "type: string_check\nname: exact\ninput: '{{sample.output_text}}'\nreference: '{{item.answer}}'\n"


@pytest.mark.parametrize(("name", "text", "where", "reason"), [
    ("g.json", '{\n  "type": "string_check",\n  "name": ,\n}', "g.json:3:11", "not valid JSON: Expecting value"),
    ("g.yaml", "type: string_check\nname: [exact\ninput: x\n", "g.yaml:3:6", "not valid YAML: expected ',' or ']'"),
    ("g.yml", "type: x\n\tname: y\n", "g.yml:2:1", "not valid YAML"),
    ("my_grader.py", "def grade(sample, item):\n    return (1.0\n", "my_grader.py:2:12",
     "Python syntax error: '(' was never closed"),
    ("g.json", "[1, 2]", "g.json:1:1", "a grader file holds one JSON object, not a list"),
    ("g.yaml", "", "g.yaml:1:1", "a grader file holds one YAML object, not an empty document"),
])
def test_syntax_errors_name_line_and_column(name: str, text: str, where: str, reason: str) -> None:
    with pytest.raises(GraderFileError) as err:
        parse_grader_text(text, name)
    assert str(err.value).startswith(f"{where}: {reason}"), str(err.value)
    assert err.value.where == where
    again = pickle.loads(pickle.dumps(err.value))  # as a process pool hands it back
    assert str(again) == str(err.value) and again.where == where


@pytest.mark.parametrize(("name", "text", "where", "field"), [
    ("g.yaml", EXACT_YAML + "operation: equals\n", "g.yaml:5:1", "operation"),
    ("g.json", '{"type": "multi", "name": "m", "calculate_output": "a",\n "graders": {\n  "a": {"type": "string_check",'
               ' "name": "a", "input": "x", "reference": "y",\n        "operation": "nope"}}}', "g.json:4:9",
     "graders.a.operation"),
    ("g.yaml", "type: score_model\nname: j\nmodel: m\ninput:\n  - role: user\n    content: hi\n  - role: 7\n"
               "    content: hi\n", "g.yaml:7:5", "input[1].role"),
    ("g.yaml", "type: string_check\nname: exact\n", "g.yaml:1:1", "input"),  # a missing field: the object
])
def test_spec_errors_name_the_field_and_where_it_is(name: str, text: str, where: str, field: str) -> None:
    with pytest.raises(GraderFileError) as err:
        load_grader_text(text, name)
    assert err.value.field == field and err.value.where == where, str(err.value)
    assert str(err.value).startswith(f"{where}: invalid grader spec: {field}: ")


def test_files_read_and_fail_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "exact.yaml").write_text(EXACT_YAML + "operation: eq\n")
    assert load_grader_file(tmp_path / "exact.yaml").name == "exact"
    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(GraderFileError, match=r"latin1\.json: not UTF-8 text"):
        load_grader_file(tmp_path / "latin1.json")
    with pytest.raises(GraderFileError, match=r"grader\.txt: unknown grader file type '\.txt' \(use \.json"):
        parse_grader_text("{}", str(tmp_path / "grader.txt"))
    with pytest.raises(GraderSpecError, match="cannot read grader file"):  # a GraderFileError is a GraderSpecError
        load_grader_file(tmp_path / "missing.json")


def test_python_file_is_a_python_grader_named_after_the_file() -> None:
    assert parse_grader_text("def grade(s, i):\n    return 1.0\n", "dir/Close_Enough.py") == {
        "type": "python", "name": "Close_Enough", "source": "def grade(s, i):\n    return 1.0\n"}


def _judge(model: str) -> dict[str, object]:
    return {"type": "score_model", "name": "j", "model": model, "input": [{"role": "user", "content": "x"}]}


def test_needs_heavy_libraries(tmp_path: Path) -> None:
    cosine = {"type": "text_similarity", "name": "c", "input": "a", "reference": "b", "evaluation_metric": "cosine"}
    bleu = {**cosine, "evaluation_metric": "bleu"}
    assert needs_heavy_libraries(cosine) and not needs_heavy_libraries(bleu)
    assert needs_heavy_libraries(_judge("hf:sshleifer/tiny-gpt2")) and not needs_heavy_libraries(_judge("gpt-4o"))
    assert needs_heavy_libraries(_judge(str(tmp_path)))  # an existing local model folder is a local judge too
    multi = {"type": "multi", "name": "m", "calculate_output": "a + b", "graders": {"a": bleu, "b": cosine}}
    assert needs_heavy_libraries(multi) and not needs_heavy_libraries({**multi, "graders": {"a": bleu}})
    python = {"type": "python", "name": "p", "source": "import torch\ndef grade(s, i):\n    return 1.0\n"}
    assert not needs_heavy_libraries(python)  # python graders run in their sandbox pool


def test_grader_file_problems_syntax_then_structure_then_content() -> None:
    assert grader_file_problems(EXACT_YAML + "operation: eq\n", "g.yaml") == []
    assert grader_file_problems("{", "g.json")[0].startswith("g.json:1:2: not valid JSON")
    assert grader_file_problems(EXACT_YAML, "g.yaml")[0].startswith("g.yaml:1:1: invalid grader spec: operation")
    assert grader_file_problems("def grade(sample):\n    return 1.0\n", "one_arg.py") == [
        "one_arg.py: source: grade must take two arguments: grade(sample, item)"]
