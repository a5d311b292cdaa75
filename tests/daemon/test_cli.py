"""The `rft-tui` command line as a user runs it: real subprocesses, a daemon it starts itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon_proc import REPO
from tests.support.jobs import EXACT_GRADER, arithmetic_rows, write_jsonl


def cli(home: Path, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RFT_HOME": str(home), "PYTHONPATH": str(REPO),
           "RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_FAKE_STEP_S": "0.02", "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "rft_tui", *args], env=env, capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    if check and out.returncode != 0:
        raise AssertionError(f"rft-tui {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture
def user_files(tmp_path: Path) -> dict[str, str]:
    grader = tmp_path / "grader.json"
    grader.write_text(json.dumps(EXACT_GRADER))
    return {"train": str(write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(10, 40))),
            "valid": str(write_jsonl(tmp_path / "valid.jsonl", arithmetic_rows(60, 10))), "grader": str(grader)}


def test_cli_end_to_end(rft_home: Path, user_files: dict[str, str]) -> None:
    try:
        assert cli(rft_home, "daemon", "status", check=False).returncode == 3
        started = json.loads(cli(rft_home, "daemon", "start", "--json").stdout)
        assert started["started"] and started["pid"] > 0
        status = json.loads(cli(rft_home, "daemon", "status", "--json").stdout)
        assert status["running"] and status["pid"] == started["pid"]

        added = json.loads(cli(rft_home, "files", "add", user_files["train"], "--json").stdout)
        assert added["rows"] == 40 and added["id"].startswith("file-")
        listing = cli(rft_home, "files", "list").stdout
        assert added["id"] in listing and "train.jsonl" in listing

        # paths are imported on the fly; the same bytes give the same file id
        job = json.loads(cli(rft_home, "jobs", "create", "--model", "builtin:tiny-arith",
                             "--training-file", user_files["train"], "--validation-file", user_files["valid"],
                             "--grader", user_files["grader"], "--hp", "max_steps=8", "--hp", "eval_interval=4",
                             "--seed", "11", "--suffix", "demo", "--json").stdout)
        assert job["training_file"] == added["id"] and job["seed"] == 11
        assert job["resolved_hyperparameters"]["max_steps"] == 8

        follow = cli(rft_home, "jobs", "events", job["id"], "--follow", timeout=120).stdout
        assert "Job succeeded" in follow and "Step 8/8" in follow

        show = cli(rft_home, "jobs", "show", job["id"]).stdout
        assert "succeeded" in show and "8/8" in show and "learning_rate" in show  # resolved hyperparameters
        listed = json.loads(cli(rft_home, "jobs", "list", "--json").stdout)
        assert [j["id"] for j in listed["data"]] == [job["id"]]
        metrics = cli(rft_home, "jobs", "metrics", job["id"]).stdout
        assert len([ln for ln in metrics.splitlines() if ln.strip()[:1].isdigit()]) == 8
        ckpts = json.loads(cli(rft_home, "jobs", "checkpoints", job["id"], "--json").stdout)
        assert {c["step_number"] for c in ckpts["data"]} == {4, 8}
    finally:
        stopped = cli(rft_home, "daemon", "stop", check=False)
    assert "Daemon stopped" in stopped.stdout
    assert cli(rft_home, "daemon", "status", check=False).returncode == 3


def test_cli_errors_are_one_clear_line(rft_home: Path, user_files: dict[str, str]) -> None:
    try:
        unknown = cli(rft_home, "jobs", "show", "ftjob-nope", check=False)
        assert unknown.returncode == 1
        assert unknown.stderr.strip() == "Error [fine_tuning_job_id]: No fine-tuning job with id 'ftjob-nope'."
        bad_hp = cli(rft_home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", user_files["train"],
                     "-g", user_files["grader"], "--hp", "warp_speed=9", check=False)
        assert bad_hp.returncode == 2 and "unknown hyperparameter 'warp_speed'" in bad_hp.stderr
        bad_val = cli(rft_home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", user_files["train"],
                      "-g", user_files["grader"], "--hp", "batch_size=0", check=False)
        assert bad_val.returncode == 1
        assert "method.reinforcement.hyperparameters.batch_size" in bad_val.stderr
        assert "Traceback" not in bad_val.stderr + bad_hp.stderr + unknown.stderr
        broken = Path(user_files["grader"]).with_name("broken.json")
        broken.write_text('{"type": "string_check",\n  "name": }')
        bad_grader = cli(rft_home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", user_files["train"],
                         "-g", str(broken), check=False)
        assert bad_grader.returncode == 2 and "broken.json:2:" in bad_grader.stderr
    finally:
        cli(rft_home, "daemon", "stop", check=False)


def test_home_option_on_commands(tmp_path: Path, rft_home: Path) -> None:
    other = tmp_path / "elsewhere"
    try:
        out = json.loads(cli(rft_home, "daemon", "start", "--home", str(other), "--json").stdout)
        assert out["socket"].startswith(str(other)) or (other / "run" / "daemon.json").exists()
        assert (other / "rft.db").exists() and not (rft_home / "rft.db").exists()
    finally:
        cli(rft_home, "daemon", "stop", "--home", str(other), check=False)


def test_graders_test_grades_a_dataset_column(rft_home: Path, tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": f"{a}+1="}], "answer": str(a + 1), "guess": str(a + (a % 2))}
            for a in range(10, 30)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    grader = tmp_path / "g.json"
    grader.write_text(json.dumps(EXACT_GRADER))
    try:
        ref = json.loads(cli(rft_home, "graders", "test", str(grader), "--file", str(data), "--json").stdout)
        assert ref["field"] == "answer" and ref["graded"] == 20 and ref["reward_mean"] == 1.0
        guess = cli(rft_home, "graders", "test", str(grader), "--file", str(data), "--field", "guess").stdout
        assert "20 of 20" in guess and "0.500 / 0.500" in guess  # every even number is off by one
        assert "lowest-scoring rows:" in guess and "line 1: 0.000  '10'" in guess
        missing = json.loads(cli(rft_home, "graders", "test", str(grader), "--file", str(data), "--field", "nope",
                                 "--json").stdout)
        assert missing["graded"] == 0 and missing["missing_field"] == 20
    finally:
        cli(rft_home, "daemon", "stop", check=False)
