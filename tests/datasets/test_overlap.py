"""Train/validation overlap: exact and near-duplicate pairs with both line numbers; jobs refuse overlap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.client import ApiRequestError
from tests.datasets.conftest import Cli, row, write
from tests.support.daemon_proc import REPO
from tests.support.jobs import job_request

LONG = ("A farmer has {n} sheep and buys {m} more at the market on a rainy Tuesday morning, then sells a "
        "third of the flock to a neighbour who keeps goats. How many sheep does the farmer have now?")


def _train_valid(tmp_path: Path) -> tuple[Path, Path]:
    train = [row(f"{a}+{a}=", str(2 * a)) for a in range(10, 30)]
    train.insert(6, row(LONG.format(n=12, m=30), "28"))  # train line 7
    valid = [row(f"{a}+{a + 3}=", str(2 * a + 3)) for a in range(50, 55)]
    valid.insert(2, row("  15+15= ", "30"))  # valid line 3: train line 6 ("15+15="), whitespace only
    valid.insert(4, row(LONG.format(n=12, m=31).upper(), "28"))  # valid line 5: one digit differs from line 7
    return (write(tmp_path / "train.jsonl", "\n".join(train) + "\n"),
            write(tmp_path / "valid.jsonl", "\n".join(valid) + "\n"))


@pytest.mark.slow
def test_exact_and_near_overlap_are_reported_with_both_lines(cli: Cli, tmp_path: Path) -> None:
    train, valid = _train_valid(tmp_path)
    rc, report = cli.json("files", "validate", str(train), "--against", str(valid))
    assert rc == 1 and report["ok"] is False
    overlap = report["overlap"]
    assert overlap["exact"] == 1 and overlap["near"] == 1
    assert [(p["valid_line"], p["train_line"]) for p in overlap["exact_pairs"]] == [(3, 6)]
    near = overlap["near_pairs"][0]
    assert (near["valid_line"], near["train_line"]) == (5, 7) and 0.8 <= near["similarity"] < 1
    against = report["against"]
    assert {(p["line"], p["code"], p["severity"]) for p in against["problems"]} == {
        (3, "overlap", "error"), (5, "near_duplicate", "warning")}
    assert report["errors"] == 0 and against["errors"] == 1

    out = cli("files", "validate", str(train), "--against", str(valid))
    assert out.returncode == 1
    assert "exact: train.jsonl line 6 = valid.jsonl line 3" in out.stdout  # each file named with its own line
    assert "near:  train.jsonl line 7 ~ valid.jsonl line 5 (" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("FAILED: 1 prompt in both train.jsonl and valid.jsonl")


def test_disjoint_example_files_pass(cli: Cli) -> None:
    ex = REPO / "examples"
    for name, grader in (("arithmetic", ex / "arithmetic" / "grader.json"),
                         ("gene-ranking", ex / "graders" / "gene_ranking.py")):
        rc, report = cli.json("files", "validate", str(ex / name / "train.jsonl"), "--against",
                              str(ex / name / "valid.jsonl"), "--grader", str(grader))
        assert rc == 0 and report["ok"], report["problems"][:3]
        assert report["overlap"]["exact"] == 0 and report["overlap"]["near"] == 0
    genes = [{json.loads(line)["reference_answer"] for line in open(ex / "gene-ranking" / f"{s}.jsonl")}
             for s in ("train", "valid")]
    assert len(genes[0]) == 40 and len(genes[1]) == 15 and not genes[0] & genes[1]


@pytest.mark.slow
def test_jobs_create_refuses_overlap_bad_rows_and_missing_grader_fields(fake_worker_daemon, tmp_path: Path) -> None:
    cli = Cli(fake_worker_daemon)
    train, valid = _train_valid(tmp_path)
    grader = REPO / "examples" / "arithmetic" / "grader.json"
    with fake_worker_daemon.client() as c:
        t, v = c.import_file(str(train)).id, c.import_file(str(valid)).id

        out = cli("jobs", "create", "-m", "builtin:tiny-arith", "-t", t, "-v", v, "-g", str(grader))
        assert out.returncode == 1 and out.stderr.startswith("Error [-v/--validation-file]: 1 validation row(s)")
        assert "validation line 3 = training line 6" in out.stderr and "--allow-overlap" in out.stderr
        assert c.list_jobs().data == []

        with pytest.raises(ApiRequestError) as err:
            c.create_job(job_request(t, v))
        assert err.value.status_code == 400 and err.value.error.code == "overlap"

        job = c.create_job({**job_request(t, v), "allow_overlap": True})
        assert job.validation_file == v

        no_answer = write(tmp_path / "noans.jsonl", row() + "\n" + json.dumps(
            {"messages": [{"role": "user", "content": "2+2="}]}) + "\n")
        n = c.import_file(str(no_answer)).id
        with pytest.raises(ApiRequestError) as err:
            c.create_job(job_request(n, None))
        assert err.value.error.param == "method.reinforcement.grader"
        assert "{{item.answer}}" in err.value.error.message and "line 2" in err.value.error.message

        bad = write(tmp_path / "bad.jsonl", row() + "\nnot json\n")
        forced = c.import_file(str(bad), force=True)
        assert forced.rows == 2 and "force" in (forced.status_details or "")
        with pytest.raises(ApiRequestError) as err:
            c.create_job(job_request(forced.id, None))
        assert err.value.error.param == "training_file" and err.value.error.code == "invalid_file"
        assert "line 2: not valid JSON" in err.value.error.message
