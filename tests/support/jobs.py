"""Small helpers to create jobs through the real API in tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daemon import api
from daemon.client import Client
from tests.support.daemon_proc import REPO

ARITH = REPO / "examples" / "arithmetic"  # the example files and grader the demo trains on

EXACT_GRADER: dict[str, Any] = {
    "type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}", "operation": "eq",
}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def arithmetic_rows(start: int, n: int) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": f"{a}+{a + 1}="}], "answer": str(2 * a + 1)}
            for a in range(start, start + n)]


def make_files(client: Client, tmp: Path) -> tuple[str, str]:
    train = client.import_file(str(write_jsonl(tmp / "train.jsonl", arithmetic_rows(10, 40))))
    valid = client.import_file(str(write_jsonl(tmp / "valid.jsonl", arithmetic_rows(60, 10))))
    return train.id, valid.id


def job_request(train: str, valid: str | None, **hp: Any) -> dict[str, Any]:
    return {
        "model": "builtin:tiny-arith", "training_file": train, "validation_file": valid, "seed": 7,
        "method": {"type": "reinforcement", "reinforcement": {"grader": EXACT_GRADER, "hyperparameters": hp}},
    }


def arith_example_job(client: Client, hyperparameters: dict[str, Any], grader: dict[str, Any] | None = None,
                      **fields: Any) -> api.FineTuningJob:
    """Create a job on the arithmetic example files and grader (seed 7); `fields` adds top-level request fields
    (a cluster, metadata)."""
    train = client.import_file(str(ARITH / "train.jsonl")).id
    valid = client.import_file(str(ARITH / "valid.jsonl")).id
    grader = grader or json.loads((ARITH / "grader.json").read_text())
    return client.create_job({"model": "builtin:tiny-arith", "training_file": train, "validation_file": valid,
                              "seed": 7, **fields, "method": {"type": "reinforcement", "reinforcement": {
                                  "grader": grader, "hyperparameters": hyperparameters}}})
