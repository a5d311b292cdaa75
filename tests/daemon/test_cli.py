"""The `rft-tui` command line as a user runs it: real subprocesses, a daemon it starts itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import api
from daemon.client import Client
from tests.support.daemon_proc import REPO, wait_until
from tests.support.jobs import EXACT_GRADER, arithmetic_rows, write_jsonl


def cli(home: Path, *args: str, check: bool = True, timeout: float = 120,
        columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RFT_HOME": str(home), "PYTHONPATH": str(REPO),
           "RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_FAKE_STEP_S": "0.02", "COLUMNS": str(columns)}
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


@pytest.mark.slow
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
        assert "Job succeeded" in follow and "Validation at step 8" in follow  # progress per step: `jobs metrics`

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


@pytest.mark.slow
def test_cli_errors_are_one_clear_line(rft_home: Path, user_files: dict[str, str]) -> None:
    try:
        unknown = cli(rft_home, "jobs", "show", "ftjob-nope", check=False)
        assert unknown.returncode == 1
        assert unknown.stderr.strip() == "Error [JOB_ID]: No fine-tuning job with id 'ftjob-nope'."
        bad_hp = cli(rft_home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", user_files["train"],
                     "-g", user_files["grader"], "--hp", "warp_speed=9", check=False)
        assert bad_hp.returncode == 2 and "unknown hyperparameter 'warp_speed'" in bad_hp.stderr
        bad_val = cli(rft_home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", user_files["train"],
                      "-g", user_files["grader"], "--hp", "batch_size=0", check=False)
        assert bad_val.returncode == 1
        assert bad_val.stderr.startswith("Error [--hp batch_size]:")
        assert "Traceback" not in bad_val.stderr + bad_hp.stderr + unknown.stderr
        broken = Path(user_files["grader"]).with_name("broken.json")
        broken.write_text('{"type": "string_check",\n  "name": }')
        bad_grader = cli(rft_home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", user_files["train"],
                         "-g", str(broken), check=False)
        assert bad_grader.returncode == 2 and "broken.json:2:" in bad_grader.stderr
        assert "Invalid value for -g/--grader:" in bad_grader.stderr
    finally:
        cli(rft_home, "daemon", "stop", check=False)


@pytest.mark.slow
def test_home_option_on_commands(tmp_path: Path, rft_home: Path) -> None:
    other = tmp_path / "elsewhere"
    try:
        out = json.loads(cli(rft_home, "daemon", "start", "--home", str(other), "--json").stdout)
        assert out["socket"].startswith(str(other)) or (other / "run" / "daemon.json").exists()
        assert (other / "rft.db").exists() and not (rft_home / "rft.db").exists()
    finally:
        cli(rft_home, "daemon", "stop", "--home", str(other), check=False)


@pytest.mark.slow
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


# ------------------------------------------------------------------ issue 10: what a new user hit in the CLI


def _job(home: Path, files: dict[str, str], steps: int) -> dict:
    return json.loads(cli(home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", files["train"], "-v",
                          files["valid"], "-g", files["grader"], "--hp", f"max_steps={steps}", "--json").stdout)


def _show(home: Path, job_id: str) -> dict:
    return json.loads(cli(home, "jobs", "show", job_id, "--json").stdout)


def _job_now(home: Path, job_id: str) -> api.FineTuningJob:
    """The job as the daemon has it: what a wait polls (a CLI process a poll cost ~0.5 s of CPU)."""
    with Client.connect(home=home, timeout=30) as c:
        return c.get_job(job_id)


@pytest.mark.slow
def test_pause_and_cancel_print_the_outcome_not_the_status_before(rft_home: Path, user_files: dict[str, str]) -> None:
    """Bug 2: `jobs pause` printed `running` (the status the request found); it waits for `paused` now."""
    try:
        job = _job(rft_home, user_files, 3000)
        wait_until(lambda: (_job_now(rft_home, job["id"]).progress.step or 0) >= 2, 60, what="training steps")
        assert cli(rft_home, "jobs", "pause", job["id"]).stdout.strip() == f"{job['id']}: paused"
        assert _show(rft_home, job["id"])["status"] == "paused"
        resumed = cli(rft_home, "jobs", "resume", job["id"]).stdout.strip()
        assert resumed in (f"{job['id']}: queued", f"{job['id']}: running")
        wait_until(lambda: _job_now(rft_home, job["id"]).status is api.JobStatus.running, 60, what="the resumed job")

        no_wait = cli(rft_home, "jobs", "pause", job["id"], "--no-wait").stdout.strip()
        assert no_wait == f"{job['id']}: paused" or "pause requested" in no_wait
        wait_until(lambda: _job_now(rft_home, job["id"]).status is api.JobStatus.paused, 60, what="the pause")
        cli(rft_home, "jobs", "resume", job["id"])
        wait_until(lambda: _job_now(rft_home, job["id"]).status is api.JobStatus.running, 60, what="the resumed job")
        assert cli(rft_home, "jobs", "cancel", job["id"]).stdout.strip() == f"{job['id']}: cancelled"
        assert _show(rft_home, job["id"])["status"] == "cancelled"
    finally:
        cli(rft_home, "daemon", "stop", check=False)


def _overlapping_files(tmp_path: Path) -> tuple[str, str]:
    train = write_jsonl(tmp_path / "t.jsonl", arithmetic_rows(10, 40))
    rows = arithmetic_rows(60, 8)
    rows[0], rows[3] = arithmetic_rows(12, 1)[0], arithmetic_rows(20, 1)[0]  # train lines 3 and 11
    return str(train), str(write_jsonl(tmp_path / "v.jsonl", rows))


@pytest.mark.slow
def test_validate_names_the_overlapping_lines_whichever_way_round(rft_home: Path, tmp_path: Path) -> None:
    """Bug 3: swapped, it printed `FAILED: 8 rows, 0 errors`, blamed the training file, reversed the lines."""
    train, valid = _overlapping_files(tmp_path)
    try:
        for first, second in ((valid, train), (train, valid)):
            out = cli(rft_home, "files", "validate", first, "--against", second, check=False)
            assert out.returncode == 1
            lines = out.stdout.splitlines()
            assert "v.jsonl: ok: 8 rows, 0 errors, 0 warnings" in lines
            assert "t.jsonl: ok: 40 rows, 0 errors, 0 warnings" in lines
            pairs = {ln.strip() for ln in lines if ln.strip().startswith("exact:")}
            if first == valid:
                assert pairs == {"exact: v.jsonl line 1 = t.jsonl line 3", "exact: v.jsonl line 4 = t.jsonl line 11"}
            else:
                assert pairs == {"exact: t.jsonl line 3 = v.jsonl line 1", "exact: t.jsonl line 11 = v.jsonl line 4"}
            assert lines[-1].startswith("FAILED: 2 prompts in both ")
            assert "0 errors" not in lines[-1] and "FAILED: 8 rows" not in out.stdout
        clean = cli(rft_home, "files", "validate", train, "--against", str(write_jsonl(
            tmp_path / "ok.jsonl", arithmetic_rows(200, 5))))
        assert clean.stdout.splitlines()[-1] == "ok: no errors"
    finally:
        cli(rft_home, "daemon", "stop", check=False)


@pytest.mark.slow
def test_short_ids_and_ambiguous_prefixes(rft_home: Path, user_files: dict[str, str]) -> None:
    """Bug 9: the TUI shows `ftjob-22777d66`; any unique prefix works, an ambiguous one lists the candidates."""
    try:
        a, b = _job(rft_home, user_files, 2), _job(rft_home, user_files, 2)
        short = a["id"][:14]
        assert short != b["id"][:14]
        assert cli(rft_home, "jobs", "show", short).stdout.split()[:2] == ["id", a["id"]]
        assert json.loads(cli(rft_home, "jobs", "show", a["id"][6:14], "--json").stdout)["id"] == a["id"]
        assert cli(rft_home, "jobs", "events", short).returncode == 0
        amb = cli(rft_home, "jobs", "show", "ftjob-", check=False)
        assert amb.returncode == 1 and "JOB_ID 'ftjob-' matches 2 jobs" in amb.stderr
        assert a["id"] in amb.stderr and b["id"] in amb.stderr and "Traceback" not in amb.stderr
        file_id = a["training_file"]
        assert cli(rft_home, "files", "show", file_id[:9]).stdout.split()[:2] == ["id", file_id]
        assert cli(rft_home, "files", "rows", file_id[:9], "--limit", "1").stdout.startswith("       1  {")
        ambiguous_file = cli(rft_home, "files", "show", "file-", check=False)
        assert ambiguous_file.returncode == 1 and "FILE_ID 'file-' matches 2 files" in ambiguous_file.stderr
    finally:
        cli(rft_home, "daemon", "stop", check=False)


@pytest.mark.slow
def test_jobs_list_in_a_pipe_is_one_line_per_job(rft_home: Path, user_files: dict[str, str]) -> None:
    """Bug 10: in a pipe at 80 columns the ids wrapped over three lines; one line per job, full ids."""
    try:
        jobs = [_job(rft_home, user_files, 2) for _ in range(3)]
        lines = cli(rft_home, "jobs", "list", columns=80).stdout.splitlines()
        assert len(lines) == 4 and lines[0].split()[:3] == ["id", "status", "step"]
        assert sorted(ln.split()[0] for ln in lines[1:]) == sorted(j["id"] for j in jobs)
        assert all("builtin:tiny-arith" in ln and len(ln) > 80 for ln in lines[1:])  # every column, never cut
        files = cli(rft_home, "files", "list", columns=80).stdout.splitlines()
        assert len(files) == 3 and {ln.split()[1] for ln in files[1:]} == {"train.jsonl", "valid.jsonl"}

        # on an 80-column terminal: one line per job, whole ids; what does not fit is named on stderr
        on_tty = _on_terminal(rft_home, 80, "jobs", "list")
        rows = [ln for ln in on_tty.splitlines() if ln.startswith("ftjob-")]
        assert sorted(ln.split()[0] for ln in rows) == sorted(j["id"] for j in jobs)
        assert all(len(ln.rstrip()) <= 80 for ln in on_tty.splitlines())
        assert "(model, created: hidden at 80 columns" in on_tty
    finally:
        cli(rft_home, "daemon", "stop", check=False)


def _on_terminal(home: Path, columns: int, *args: str) -> str:
    """`rft-tui ARGS` with stdout and stderr on a pseudo-terminal `columns` wide; what the terminal showed."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "RFT_HOME": str(home), "PYTHONPATH": str(REPO), "COLUMNS": str(columns), "TERM": "dumb",
           "RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_FAKE_STEP_S": "0.02"}
    try:
        proc = subprocess.run([sys.executable, "-m", "rft_tui", *args], env=env, stdout=slave, stderr=slave,
                              stdin=subprocess.DEVNULL, timeout=60)
    finally:
        os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal is drained and closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.returncode == 0
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.slow
def test_errors_name_the_argument_the_user_typed(rft_home: Path, user_files: dict[str, str],
                                                 tmp_path: Path) -> None:
    """Bug 12: `graders validate BAD.json` blamed `--grader`; `-t trian.jsonl` did not name `-t`."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "string_check",\n "name": }')
    out = cli(rft_home, "graders", "validate", str(bad), check=False)
    assert out.returncode == 2 and "Invalid value for GRADER: " in out.stderr and "--grader" not in out.stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**EXACT_GRADER, "operation": "equals"}))
    try:
        spec = cli(rft_home, "graders", "validate", str(wrong), check=False)
        assert spec.returncode == 1 and spec.stderr.startswith("Error [GRADER]: ") and "operation" in spec.stderr
        typo = cli(rft_home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", "trian.jsonl", "-g",
                   user_files["grader"], check=False)
        assert typo.returncode == 2 and "Invalid value for -t/--training-file: trian.jsonl" in typo.stderr
        vaild = str(Path(user_files["valid"]).with_name("vaild.jsonl"))
        vtypo = cli(rft_home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", user_files["train"], "-v",
                    vaild, "-g", user_files["grader"], check=False)
        assert f"Invalid value for -v/--validation-file: {vaild} is neither a file id nor an existing file " \
               f"(did you mean {user_files['valid']}?)" in vtypo.stderr
        missing = cli(rft_home, "jobs", "create", "-m", "builtin:tiny-arith", "-t", user_files["train"], "-g",
                      user_files["grader"], "-v", "file-0000", check=False)
        assert missing.returncode == 1 and missing.stderr.startswith("Error [-v/--validation-file]: ")
    finally:
        cli(rft_home, "daemon", "stop", check=False)


@pytest.mark.slow
def test_local_files_are_hashed_first_and_sent_only_once(daemon_factory, user_files: dict[str, str]) -> None:
    """Bug 5: the client uploads bytes (a remote daemon cannot read our paths), and only when the store lacks them."""
    d = daemon_factory()
    sent: list[int] = []
    with d.client() as c:
        first = c.add_file(user_files["train"], on_progress=sent.append)
        assert sum(sent) == Path(user_files["train"]).stat().st_size and first.filename == "train.jsonl"
        sent.clear()
        again = c.add_file(user_files["train"], on_progress=sent.append)
        assert again.id == first.id and sent == []
        assert c.find_file(first.sha256).id == first.id and c.find_file("0" * 64) is None


@pytest.mark.slow
def test_daemon_status_reports_the_daemon_that_socket_names(tmp_path: Path, rft_home: Path) -> None:
    """`--socket`/`--url` name a daemon elsewhere: `daemon status` asks it, not the local RFT_HOME."""
    other = tmp_path / "o"
    try:
        started = json.loads(cli(rft_home, "daemon", "start", "--home", str(other), "--json").stdout)
        status = json.loads(cli(rft_home, "--socket", started["socket"], "daemon", "status", "--json").stdout)
        assert status["running"] and status["pid"] == started["pid"]
        gone = cli(rft_home, "--socket", str(tmp_path / "none.sock"), "daemon", "status", check=False)
        assert gone.returncode == 3 and gone.stdout.startswith("Not running: Cannot reach the daemon")
        assert not (rft_home / "rft.db").exists()
    finally:
        cli(rft_home, "daemon", "stop", "--home", str(other), check=False)


@pytest.mark.slow
def test_daemon_commands_with_url_act_on_that_daemon_or_say_why_not(daemon_factory, rft_home: Path,
                                                                  tmp_path: Path) -> None:
    """--url names a daemon elsewhere: `daemon stop` asks it over the API; start/restart/logs, which can only act
    on this machine's daemon, refuse with the reason instead of silently touching the local one."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = daemon_factory(tcp=f"127.0.0.1:{port}")
    url, token = f"http://127.0.0.1:{port}", remote.paths.token_file.read_text().strip()
    here = tmp_path / "here"  # this machine's RFT_HOME: must stay untouched
    for command in ("start", "restart", "logs"):
        out = cli(here, "--url", url, "--token", token, "daemon", command, check=False)
        assert out.returncode == 2 and f"`daemon {command}` works on this machine's daemon" in out.stderr, out
        assert f"--url names the daemon at {url}" in out.stderr and "Traceback" not in out.stderr
    stopped = json.loads(cli(here, "--url", url, "--token", token, "daemon", "stop", "--json").stdout)
    assert stopped == {"stopped": True, "pid": remote.pid, "url": url}
    wait_until(lambda: remote.proc.poll() is not None, 30, what="the remote daemon to exit")
    assert not (here / "rft.db").exists() and not (here / "run").exists()


def test_ssh_target_forms_and_the_remote_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """`host:port`, `-p`, IPv6, extra ssh options and a remote RFT_HOME with a space, quoted for the remote shell."""
    from rft_tui.ssh_forward import SshForwardError, SshSettings

    monkeypatch.delenv("RFT_SSH", raising=False)
    s = SshSettings.parse("ada@gpu:2222")
    assert (s.target, s.port) == ("ada@gpu", 2222)
    assert SshSettings.parse("gpu", port=22).port == 22 and SshSettings.parse("gpu").port is None
    assert (SshSettings.parse("ada@[::1]:2200").target, SshSettings.parse("[::1]:2200").port) == ("ada@::1", 2200)
    for bad, message in (("gpu:22", "different ports"), ("gpu:ssh", "must be a number"),
                         ("-oProxyCommand=x", "expects")):
        with pytest.raises(SshForwardError, match=message):
            SshSettings.parse(bad, port=23 if bad == "gpu:22" else None)
    s = SshSettings.parse("ada@gpu", port=2222, options="-F cfg -i 'my key'", remote_command="~/v/bin/rft-tui",
                          remote_home="/data/rft home")
    assert s.remote_argv(["daemon", "status", "--json"]) == [
        "ssh", "-o", "BatchMode=yes", "-p", "2222", "-F", "cfg", "-i", "my key", "ada@gpu", "~/v/bin/rft-tui",
        "--home", "'/data/rft home'", "daemon", "status", "--json"]
