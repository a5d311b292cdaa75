"""examples/tools-arith: what make_examples.py writes, rows the daemon's validator accepts, and a job spec the API
takes (with the same `add` schema the built-in tools model was trained with)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from daemon import api, tiny_tools

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOOLS = EXAMPLES / "tools-arith"


def make_examples() -> Any:
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (TOOLS / name).read_text().splitlines()]


def test_files_are_what_make_examples_writes_and_do_not_overlap() -> None:
    import random

    module = make_examples()
    train, valid = module.tools_arithmetic(random.Random(module.SEED + 2))
    assert rows("train.jsonl") == train and rows("valid.jsonl") == valid
    assert len(train) == module.TOOLS_TRAIN and len(valid) == module.TOOLS_VALID
    assert not {r["messages"][0]["content"] for r in train} & {r["messages"][0]["content"] for r in valid}
    for r in train[:50] + valid[:50]:
        a, b = map(int, r["messages"][0]["content"].removesuffix("=").split("+"))
        assert r["answer"] == str(a + b) and r["tools"] == [tiny_tools.ADD_TOOL]
    assert json.loads((TOOLS / "job.json").read_text()) == module.TOOLS_JOB
    assert json.loads((TOOLS / "tools.json").read_text()) == module.TOOLS_JOB["method"]["reinforcement"]["tools"]
    assert json.loads((TOOLS / "grader.json").read_text()) == json.loads(
        (EXAMPLES / "arithmetic" / "grader.json").read_text())


def test_rows_validate_and_the_job_spec_is_a_job_request() -> None:
    from daemon.datasets.scan import scan_file

    for name in ("train.jsonl", "valid.jsonl"):
        report = scan_file(str(TOOLS / name), name).report
        assert report.ok and report.errors == 0 and report.warnings == 0, report.problems[:3]
    spec = json.loads((TOOLS / "job.json").read_text())
    spec["training_file"], spec["validation_file"] = "file-train", "file-valid"
    request = api.JobCreateRequest.model_validate(spec)
    assert request.model == "builtin:tiny-tools"
    rft = request.method.reinforcement
    assert rft is not None and rft.tools is not None
    assert isinstance(rft.tools["add"], api.HttpToolRuntime)
