"""`rft-tui files validate` and `files add` on a corpus of malformed files: exact line, field and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.datasets.conftest import Cli, row, store_state, write

GOOD = row()
# name -> (content, line, code, field, words the reason must contain)
CORPUS: dict[str, tuple[bytes | str, int | None, str, str | None, str]] = {
    "not_json": (f"{GOOD}\n{{\"messages\": [\n", 2, "invalid_json", None, "not valid JSON"),
    "not_object": (f"{GOOD}\n{GOOD}\n[1, 2]\n", 3, "not_an_object", None, "must be a JSON object, got array"),
    "bad_utf8": (GOOD.encode() + b"\n" + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n', 2,
                 "invalid_utf8", None, "not UTF-8: byte 0xe9"),
    "no_messages": (f"{GOOD}\n{json.dumps({'answer': '3'})}\n", 2, "missing_messages", "messages",
                    "`messages` is missing"),
    "messages_not_list": (f"{json.dumps({'messages': 'hi', 'answer': '3'})}\n", 1, "invalid_messages", "messages",
                          "must be a list, got string"),
    "messages_empty": (f"{GOOD}\n{GOOD}\n{json.dumps({'messages': [], 'answer': '3'})}\n", 3, "empty_messages",
                       "messages", "`messages` is empty"),
    "bad_role": (f"{json.dumps({'messages': [{'role': 'robot', 'content': 'x'}], 'answer': '3'})}\n", 1,
                 "invalid_role", "messages[0].role", "role 'robot' is not one of"),
    "content_number": (f"{GOOD}\n{json.dumps({'messages': [{'role': 'user', 'content': 42}], 'answer': '3'})}\n",
                       2, "invalid_content", "messages[0].content", "got number"),
    "last_assistant": (f"{GOOD}\n" + json.dumps({"messages": [{"role": "user", "content": "1+2="},
                                                              {"role": "assistant", "content": "3"}],
                                                 "answer": "3"}) + "\n", 2, "last_message_role",
                       "messages[1].role", "last message must be from user or developer"),
    "tools_object": (f"{json.dumps({'messages': [{'role': 'user', 'content': 'x'}], 'tools': {'a': 1}})}\n", 1,
                     "invalid_tools", "tools", "`tools` must be a list, got object"),
    "tool_no_name": (f"{GOOD}\n" + json.dumps({"messages": [{"role": "user", "content": "x"}],
                                              "tools": [{"type": "function", "function": {}}]}) + "\n", 2,
                     "invalid_tools", "tools[0].function.name", "needs a non-empty string `name`"),
    "empty": (b"", None, "empty_file", None, "the file has no rows"),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
@pytest.mark.slow
def test_each_problem_is_reported_with_line_field_and_reason(cli: Cli, tmp_path: Path, name: str) -> None:
    content, line, code, field, reason = CORPUS[name]
    path = write(tmp_path / f"{name}.jsonl", content)
    where = f"{name}.jsonl:{line}" if line is not None else f"{name}.jsonl"

    out = cli("files", "validate", str(path))
    assert out.returncode == 1, out.stdout + out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(f"{where}: error:")]
    assert lines, out.stdout
    assert any(reason in ln and f"[{code}]" in ln and (field is None or f" {field}:" in ln) for ln in lines), lines
    assert f"{name}.jsonl: FAILED" in out.stdout

    rc, report = cli.json("files", "validate", str(path))
    assert rc == 1 and report["ok"] is False and report["errors"] >= 1
    match = [p for p in report["problems"] if p["code"] == code]
    assert match and match[0]["line"] == line and match[0]["field"] == field and reason in match[0]["message"]
    assert match[0]["severity"] == "error" and match[0]["file"] == f"{name}.jsonl"


@pytest.mark.parametrize("name", ["not_json", "bad_utf8", "last_assistant", "empty"])
def test_import_refuses_a_bad_file_and_leaves_nothing(cli: Cli, tmp_path: Path, name: str) -> None:
    content, line, code, _, reason = CORPUS[name]
    path = write(tmp_path / f"{name}.jsonl", content)
    before = store_state(cli.daemon)

    out = cli("files", "add", str(path))
    assert out.returncode == 1
    assert out.stderr.startswith("Error [file]: ") and f"{name}.jsonl has 1 error" in out.stderr
    assert reason in out.stderr and (line is None or f"line {line}" in out.stderr)
    assert "Traceback" not in out.stderr
    assert store_state(cli.daemon) == before

    from daemon.client import ApiRequestError

    with cli.daemon.client() as c, pytest.raises(ApiRequestError) as err:
        c.import_file(str(path))
    assert err.value.status_code == 400 and err.value.error.code == "invalid_file"
    assert store_state(cli.daemon) == before


@pytest.mark.slow
def test_grader_fields_missing_from_rows(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", f"{row()}\n{json.dumps({'messages': [{'role': 'user', 'content': 'x'}]})}\n")
    grader = write(tmp_path / "g.json", json.dumps({"type": "string_check", "name": "g", "operation": "eq",
                                                    "input": "{{sample.output_text}}",
                                                    "reference": "{{item.answer}}"}))
    assert cli("files", "validate", str(path)).returncode == 0
    out = cli("files", "validate", str(path), "--grader", str(grader))
    assert out.returncode == 1
    assert "t.jsonl:2: error: answer: row has no `answer`, which the grader uses ({{item.answer}}) " \
           "[missing_item_field]" in out.stdout
    rc, report = cli.json("files", "validate", str(path), "--grader", str(grader))
    assert [(p["line"], p["field"], p["code"]) for p in report["problems"]] == [(2, "answer", "missing_item_field")]


def test_warnings_do_not_fail(cli: Cli, tmp_path: Path) -> None:
    parts = [{"type": "text", "text": "1+"}, {"type": "text", "text": "2="}]
    text = "\n".join([row(), row(), "", json.dumps({"messages": [{"role": "user", "content": parts}], "answer": 3}),
                      row("9" * 40_000)]) + "\n"
    path = write(tmp_path / "w.jsonl", text)
    rc, report = cli.json("files", "validate", str(path))
    assert rc == 0 and report["ok"] and report["errors"] == 0
    found = {(p["line"], p["code"]) for p in report["problems"]}
    assert found == {(2, "duplicate_row"), (3, "blank_line"), (4, "mixed_types"), (5, "long_prompt")}
    mixed = next(p for p in report["problems"] if p["code"] == "mixed_types")
    assert mixed["field"] == "answer"
    assert "a number here" in mixed["message"] and "a string in 3 of 4" in mixed["message"]
    assert report["stats"]["rows"] == 4
    out = cli("files", "validate", str(path))
    assert out.returncode == 0 and "w.jsonl:2: warning: duplicate of line 1 [duplicate_row]" in out.stdout
    assert "w.jsonl: ok: 4 rows, 0 errors, 4 warnings" in out.stdout


def test_listing_is_capped_but_counting_goes_on(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path / "many.jsonl", "".join(f"oops {i}\n" for i in range(500)))
    rc, report = cli.json("files", "validate", str(path), "--max-problems", "10")
    assert rc == 1 and report["errors"] == 500 and report["problems_truncated"] is True
    assert [p["line"] for p in report["problems"]] == list(range(1, 11))
    out = cli("files", "validate", str(path), "--max-problems", "10")
    assert "list capped; 500 errors" in out.stdout


@pytest.mark.slow
def test_validate_a_stored_file_by_id_and_show_its_stats(cli: Cli) -> None:
    from tests.support.daemon_proc import REPO

    rc, obj = cli.json("files", "add", str(REPO / "examples" / "arithmetic" / "train.jsonl"))
    assert rc == 0 and obj["rows"] == 1500
    rc, report = cli.json("files", "validate", obj["id"])
    assert rc == 0 and report["ok"] and report["stats"]["rows"] == 1500
    rc, shown = cli.json("files", "show", obj["id"])
    fields = {f["name"]: f for f in shown["stats"]["fields"]}
    assert fields["answer"]["types"] == {"string": 1500} and fields["answer"]["top_values"]
    assert shown["stats"]["prompt_chars"]["min"] == 6 and shown["stats"]["prompt_chars"]["max"] == 6
    out = cli("files", "show", obj["id"])
    assert out.returncode == 0 and "prompt chars   min 6" in out.stdout and "answer" in out.stdout


@pytest.mark.slow
def test_bad_requests_are_one_line_errors(cli: Cli, tmp_path: Path) -> None:
    out = cli("files", "validate", str(tmp_path / "nope.jsonl"))
    assert out.returncode == 2 and "Invalid value for FILE: " in out.stderr and "Traceback" not in out.stderr
    assert f"{tmp_path / 'nope.jsonl'} is neither a file id nor an existing file" in out.stderr
    out = cli("files", "validate", "file-doesnotexist")
    assert out.returncode == 1 and "No file with id 'file-doesnotexist'" in out.stderr
