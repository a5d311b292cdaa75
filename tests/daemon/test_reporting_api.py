"""Reporting over the API (issue 12): a worker that never opens the store reports through the daemon's TCP
listener with its job's own token; the token reaches nothing else; appends are idempotent; a daemon that goes
away mid-run loses nothing (the worker journals on disk and replays in order when it is back).

Real processes throughout: a daemon with --tcp, workers it spawns (the fake worker, switched to the HTTP
reporter and run under bubblewrap with RFT_HOME hidden), and a worker-side HttpReporter in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon import api
from daemon.store import Store
from tests.support.daemon_proc import REPO, DaemonProcess, wait_until
from tests.support.jobs import arithmetic_rows, job_request, write_jsonl

# the worker's view of the machine has an empty RFT_HOME: it starts only if the store is not there
HIDE_HOME = "bwrap --dev-bind / / --tmpfs {home} -- sh -c 'test ! -e {home}/rft.db && exec \"$@\"' hide-home"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _files(c: Any, tmp: Path) -> tuple[str, str]:
    train = c.import_file(str(write_jsonl(tmp / "train.jsonl", arithmetic_rows(10, 30)))).id
    valid = c.import_file(str(write_jsonl(tmp / "valid.jsonl", arithmetic_rows(60, 10)))).id
    return train, valid


def _journal_pending(scratch: Path) -> int:
    """Records the worker has journalled but the daemon has not confirmed (read from its files on disk)."""
    journal = scratch / "report-journal"
    try:
        lines = sum(1 for ln in (journal / "records.jsonl").read_bytes().split(b"\n") if ln.strip())
    except FileNotFoundError:
        return 0
    try:
        acked = int((journal / "acked").read_text() or 0)
    except FileNotFoundError:
        acked = 0
    return lines - acked


def _assert_every_record_once(c: Any, job_id: str, steps: int, eval_interval: int) -> None:
    """Steps 1..N each once with one sample each; every validation and checkpoint once; their events once."""
    metrics = c.metrics(job_id).data
    assert [m.step for m in metrics] == list(range(1, steps + 1))
    samples = c.samples(job_id, limit=10_000).data
    assert sorted(s.step for s in samples) == list(range(1, steps + 1))
    valid_steps = [0, *range(eval_interval, steps + 1, eval_interval)]
    assert c.validation(job_id).steps == valid_steps
    events = c.list_events(job_id, limit=1000).data
    messages = [e.message for e in events]
    for step in valid_steps:
        assert sum(m.startswith(f"Validation at step {step}:") for m in messages) == 1, messages
    ckpt_steps = valid_steps[1:]
    for step in ckpt_steps:
        assert messages.count(f"Checkpoint saved at step {step}") == 1, messages
    assert sum(m.startswith("Fake worker pid") for m in messages) == 1


@pytest.fixture
def http_daemon(daemon_factory, tmp_path: Path) -> DaemonProcess:
    """A daemon on TCP whose fake workers report over HTTP, under bubblewrap with RFT_HOME hidden."""
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (scripts/setup.sh installs it)")
    port = _free_port()
    scratch_root = tmp_path / "scratch"
    scratch_root.mkdir()
    d: DaemonProcess = daemon_factory(env={
        "RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_WORKER_REPORTER": "http",
        "RFT_WORKER_WRAPPER": HIDE_HOME, "RFT_WORKER_SCRATCH_ROOT": str(scratch_root),
        "RFT_FAKE_STEP_S": "0.05", "RFT_CANCEL_GRACE_S": "3", "RFT_REPORT_RETRY_MAX_S": "1"},
        tcp=f"127.0.0.1:{port}")
    return d


@pytest.mark.slow
def test_a_worker_reports_every_record_over_the_api_with_the_store_hidden(http_daemon: DaemonProcess,
                                                                           tmp_path: Path) -> None:
    d = http_daemon
    with d.client() as c:
        train, valid = _files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=12, eval_interval=4))
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 60,
                          what="the HTTP-reporting job to finish")
        log = c.job_log(job.id).lines
        assert done.status is api.JobStatus.succeeded, (done.error, log)
        assert done.fine_tuned_model == f"ft:fake:{job.id}"
        _assert_every_record_once(c, job.id, 12, 4)
        ckpts = c.list_checkpoints(job.id).data
        scratch = tmp_path / "scratch" / f"rft-worker-{job.id}"
        assert ckpts and all(ck.path and ck.path.startswith(str(scratch)) for ck in ckpts)
    journal = scratch / "report-journal"
    assert _journal_pending(scratch) == 0 and (journal / "records.jsonl").stat().st_mode & 0o077 == 0
    assert not (journal / "rejected.jsonl").exists()


@pytest.mark.slow
def test_a_daemon_killed_mid_run_loses_and_doubles_nothing(http_daemon: DaemonProcess, tmp_path: Path) -> None:
    """Kill -9 the daemon mid-run: the worker buffers on disk; after a restart it replays, in order, once."""
    d = http_daemon
    steps = 60
    with d.client() as c:
        train, valid = _files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=steps, eval_interval=10))
        wait_until(lambda: (c.metrics(job.id).last_step or 0) >= 8, 60, what="the worker's first steps")
    d.kill()
    scratch = tmp_path / "scratch" / f"rft-worker-{job.id}"
    # the worker keeps training: records pile up in its journal while nobody answers
    wait_until(lambda: _journal_pending(scratch) >= 15, 60, what="records buffered in the worker's journal")
    buffered = _journal_pending(scratch)
    d.start()
    with d.client() as c:
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 90,
                          what="the job to finish after the daemon came back")
        assert done.status is api.JobStatus.succeeded, (done.error, c.job_log(job.id).lines)
        _assert_every_record_once(c, job.id, steps, 10)
    assert _journal_pending(scratch) == 0
    log = "\n".join(d.paths.job_log(job.id).read_text().splitlines())
    assert "cannot reach the daemon" in log and "sending the buffered records" in log
    print(f"buffered {buffered} records while the daemon was down; all replayed once")


# ---------------------------------------------------------------------- the token and the endpoints


@pytest.fixture(scope="module")
def queued_daemon() -> Iterator[tuple[DaemonProcess, str]]:
    """One TCP daemon for this module's API tests, whose jobs stay queued (no worker writes meanwhile)."""
    home = Path(tempfile.mkdtemp(prefix="rft-report-"))
    port = _free_port()
    d = DaemonProcess(home, env={"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_MAX_RUNNING_JOBS": "0",
                                 "RFT_DEVICE": "cpu"}, tcp=f"127.0.0.1:{port}").start()
    try:
        yield d, f"http://127.0.0.1:{port}"
    finally:
        d.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def two_jobs(queued_daemon: tuple[DaemonProcess, str], tmp_path: Path) -> tuple[DaemonProcess, str, str, str]:
    """Two fresh queued jobs on the module's daemon, and its TCP base URL."""
    d, base = queued_daemon
    with d.client() as c:
        train, valid = _files(c, tmp_path)
        a = c.create_job(job_request(train, valid, max_steps=5, eval_interval=5)).id
        b = c.create_job(job_request(train, valid, max_steps=5, eval_interval=5)).id
    return d, a, b, base


def _mint(d: DaemonProcess, job_id: str) -> str:
    """What the scheduler does when it starts a worker that reports over HTTP."""
    store = Store(d.paths.db)
    try:
        return store.mint_job_token(job_id)
    finally:
        store.close()


def _step(step: int, rid: str | None = None) -> dict[str, Any]:
    return {"kind": "step", "id": rid, "step": step, "values": {"reward": 0.5, "loss": 1.0},
            "samples": [{"prompt": "1+1=", "completion": "2", "reward": 1.0, "item": {"answer": "2"},
                         "trajectory": [{"role": "tool"}]}]}


def test_a_job_token_reaches_only_its_own_jobs_reporting_endpoints(two_jobs: tuple[DaemonProcess, str, str, str],
                                                                  tmp_path: Path) -> None:
    d, a, b, base = two_jobs
    token = _mint(d, a)
    row = Store(d.paths.db).query_one("SELECT COUNT(*) AS n FROM job_tokens WHERE token_sha256 LIKE ?",
                                      [f"%{token}%"])
    assert a in token and row is not None and row["n"] == 0  # hashed
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=10, headers=auth) as h:
        # its own job: spec, state, appends
        assert h.get(f"/v1/fine_tuning/jobs/{a}/report/spec").json()["hyperparameters"]["max_steps"] == 5
        assert h.get(f"/v1/fine_tuning/jobs/{a}/report/state").json()["status"] == "queued"
        ack = h.post(f"/v1/fine_tuning/jobs/{a}/report/records", json={"records": [_step(1, "r-1")]})
        assert ack.status_code == 200 and ack.json()["applied"] == 1
        # nothing else: other jobs, lists, creation, files, graders, control, health, its own job's other views
        refused = [
            h.get(f"/v1/fine_tuning/jobs/{b}/report/state"),
            h.get(f"/v1/fine_tuning/jobs/{b}/report/spec"),
            h.post(f"/v1/fine_tuning/jobs/{b}/report/records", json={"records": [_step(1)]}),
            h.get("/v1/fine_tuning/jobs"), h.get(f"/v1/fine_tuning/jobs/{a}"), h.get(f"/v1/fine_tuning/jobs/{b}"),
            h.get(f"/v1/fine_tuning/jobs/{a}/metrics"), h.get(f"/v1/fine_tuning/jobs/{a}/events"),
            h.post("/v1/fine_tuning/jobs", json=job_request("file-x", None)),
            h.post(f"/v1/fine_tuning/jobs/{a}/cancel"), h.post(f"/v1/fine_tuning/jobs/{b}/cancel"),
            h.get("/v1/files"), h.post("/v1/files/import", json={"path": str(tmp_path / "train.jsonl")}),
            h.get("/v1/graders"), h.get("/v1/health"), h.post("/v1/shutdown"),
            h.get(f"/v1/fine_tuning/jobs/{a}/report/..%2F..%2F..%2Ffiles"),
        ]
        for resp in refused:
            assert resp.status_code in (401, 403), (resp.request.method, resp.request.url, resp.status_code,
                                                    resp.text)
            assert resp.json()["error"]["type"] in ("authentication_error", "permission_error")
        assert refused[0].status_code == 403 and refused[0].json()["error"]["code"] == "job_token_scope"
        # a tampered token, and a token replaced by a newer attempt's, are refused on the job's own endpoints
        for bad in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), f"rftjob.{a}.x"):
            resp = h.get(f"/v1/fine_tuning/jobs/{a}/report/state", headers={"Authorization": f"Bearer {bad}"})
            assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_job_token"
        _mint(d, a)
        assert h.get(f"/v1/fine_tuning/jobs/{a}/report/state").status_code == 401
    with d.client() as c:  # the owner sees: job a has its one step, job b nothing, and b was not cancelled
        assert [m.step for m in c.metrics(a).data] == [1]
        assert c.metrics(b).data == [] and c.get_job(b).status is api.JobStatus.queued


@pytest.mark.slow
def test_a_jobs_token_ends_with_the_job(daemon_factory, tmp_path: Path) -> None:
    """Succeeded or failed: its token is refused at once (401). Cancelled: honoured for the cancel grace (the
    worker is still stopping), then refused. Paused and resumed: the same token until a new submission mints a
    fresh one, which replaces it."""
    port = _free_port()
    d: DaemonProcess = daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_DEVICE": "cpu",
                                           "RFT_MAX_RUNNING_JOBS": "0", "RFT_CANCEL_GRACE_S": "3"},
                                      tcp=f"127.0.0.1:{port}")
    with d.client() as c:
        train, valid = _files(c, tmp_path)
        ok, bad, gone, paused = (c.create_job(job_request(train, valid, max_steps=5)).id for _ in range(4))
    tokens = {job: _mint(d, job) for job in (ok, bad, gone, paused)}

    def report(job: str, token: str | None = None) -> httpx.Response:
        return h.post(f"/v1/fine_tuning/jobs/{job}/report/records", json={"records": [_step(1)]},
                      headers={"Authorization": f"Bearer {token or tokens[job]}"})

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as h:
        assert [report(j).status_code for j in tokens] == [200] * 4
        store = Store(d.paths.db)  # the transitions the scheduler makes when an engine job or a worker ended
        try:
            assert store.transition(ok, api.JobStatus.running) and store.transition(ok, api.JobStatus.succeeded)
            assert store.transition(bad, api.JobStatus.failed)
        finally:
            store.close()
        for job in (ok, bad):
            refused = report(job)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["code"] == "invalid_job_token" and "job ended" in refused.text
        with d.client() as c:
            assert c.cancel_job(gone).status is api.JobStatus.cancelled
            assert report(gone).status_code == 200  # within the grace: the stopping worker's last records land
            assert c.pause_job(paused).status is api.JobStatus.paused
            assert report(paused).status_code == 200
            assert c.resume_job(paused).status is api.JobStatus.queued
            assert report(paused).status_code == 200  # resumed, not yet submitted again: the same token
        wait_until(lambda: report(gone).status_code == 401, 30, interval=0.2, what="the cancel grace to end")
        fresh = _mint(d, paused)  # what the resumed job's new submission (or local spawn) does
        assert report(paused).status_code == 401 and report(paused, fresh).status_code == 200


def test_appends_are_idempotent_by_record_id_and_by_step(two_jobs: tuple[DaemonProcess, str, str, str]) -> None:
    d, a, _b, base = two_jobs
    auth = {"Authorization": f"Bearer {_mint(d, a)}"}
    batch = {"records": [
        {"kind": "started", "id": "w1-1", "total_steps": 5, "message": "worker up"},
        {"kind": "validation", "id": "w1-2", "step": 0,
         "rows": [{"row_index": 0, "prompt": "1+1=", "output": "2", "reward": 1.0, "reference": "2",
                   "sub_rewards": {"exact": 1.0, "judge": None}},
                  {"row_index": 1, "prompt": "2+2=", "output": "5", "reward": 0.0, "reference": "4"}]},
        _step(1, "w1-3"), _step(2, "w1-4"),
        {"kind": "event", "id": "w1-5", "message": "a warning from the worker", "level": "warn"},
        {"kind": "checkpoint", "id": "w1-6", "step": 2, "location": "s3://bucket/rft/job/step-2",
         "metrics": {"valid_reward_mean": 0.5}},
    ]}
    with httpx.Client(base_url=base, timeout=10, headers=auth) as h:
        first = h.post(f"/v1/fine_tuning/jobs/{a}/report/records", json=batch).json()
        again = h.post(f"/v1/fine_tuning/jobs/{a}/report/records", json=batch).json()
        # a later attempt (new ids) re-sending step 2: the step is kept once, by its number
        third = h.post(f"/v1/fine_tuning/jobs/{a}/report/records",
                       json={"records": [_step(2, "w2-1"), _step(3, "w2-2")]}).json()
        bad = h.post(f"/v1/fine_tuning/jobs/{a}/report/records",
                     json={"records": [{"kind": "step", "id": "w2-3", "step": -1}]})
    assert (first["applied"], first["duplicates"]) == (6, 0)
    assert (again["applied"], again["duplicates"]) == (0, 6)
    assert (third["applied"], third["duplicates"]) == (1, 1)
    assert first["control"] == {"status": "queued", "requested_action": None, "stacks_requested": 0}
    assert bad.status_code == 400 and bad.json()["error"]["param"].startswith("records.0")
    with d.client() as c:
        assert [m.step for m in c.metrics(a).data] == [1, 2, 3]
        assert len(c.samples(a).data) == 3
        messages = [e.message for e in c.list_events(a, limit=100).data]
        assert messages.count("worker up") == 1 and messages.count("a warning from the worker") == 1
        assert sum(m.startswith("Validation at step 0") for m in messages) == 1
        assert messages.count("Checkpoint saved at step 2") == 1
        ckpt = c.list_checkpoints(a).data
    store = Store(d.paths.db)
    try:  # each sample keeps the dataset row it was graded against (re-scoring grades it again)
        assert [s["item"] for s in store.sample_rows(a)] == [{"answer": "2"}] * 3
    finally:
        store.close()
    with d.client() as c:
        assert [(ck.step_number, ck.path) for ck in ckpt] == [(2, "s3://bucket/rft/job/step-2")]
        assert c.get_job(a).progress.valid_reward_base == 0.5
        assert c.validation(a, step=0).data[0].sub_rewards == {"exact": 1.0}  # a score that is no number: left out


REPORTER_SCRIPT = """
import json, sys
from daemon.worker.http_reporter import HttpReporter
url, token, job_id, scratch, n = sys.argv[1:6]
r = HttpReporter(url, token, job_id, scratch=scratch)
state = r.job()
start = (r.last_step() or 0) + 1
r.started(int(n), message="driver up")
if 0 not in r.validated_steps():
    r.log_validation(0, [{"row_index": 0, "prompt": "p", "output": "o", "reward": 0.25}])
for step in range(start, int(n) + 1):
    r.log_step(step, {"reward": step / int(n)}, samples=[{"prompt": "p", "completion": str(step), "reward": 1.0}])
r.add_checkpoint(int(n), scratch + "/ckpt", {"valid_reward_mean": 0.5})
r.event("driver done", data={"n": int(n)})
r.finish("succeeded", fine_tuned_model="ft:driver")
print(json.dumps({"delivered": r.delivered, "start": start, "control": r.requested_action()}))
r.close()
"""


def test_a_worker_side_reporter_delivers_everything_in_a_subprocess(
        two_jobs: tuple[DaemonProcess, str, str, str], tmp_path: Path) -> None:
    d, a, _b, base = two_jobs
    token = _mint(d, a)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RFT_HOME", None)
    out = subprocess.run([sys.executable, "-c", REPORTER_SCRIPT, base, token, a, str(tmp_path / "w"), "40"],
                         capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["delivered"] == 1 + 1 + 40 + 1 + 1 + 1 and result["start"] == 1
    with d.client() as c:
        assert [m.step for m in c.metrics(a).data] == list(range(1, 41))
        assert len(c.samples(a, limit=1000).data) == 40
        assert c.validation(a).steps == [0]
        assert c.list_checkpoints(a).data[0].path == str(tmp_path / "w" / "ckpt")
        job = c.get_job(a)
        assert job.progress.total_steps == 40 and job.progress.step == 40
    store = Store(d.paths.db)
    try:
        row = store.get_job_row(a)
        assert row is not None and (row["worker_outcome"], row["fine_tuned_model"]) == ("succeeded", "ft:driver")
    finally:
        store.close()


CONTROL_SCRIPT = """
import json, sys, time
from daemon.worker.http_reporter import HttpReporter
url, token, job_id, scratch = sys.argv[1:5]
r = HttpReporter(url, token, job_id, scratch=scratch, control_interval_s=0.2)
r.job()
step, deadline = 0, time.monotonic() + 60
while r.requested_action() != "cancel" and time.monotonic() < deadline:
    step += 1
    r.log_step(step, {"reward": 0.5})
    time.sleep(0.05)  # a training step's work
r.finish("cancelled" if r.requested_action() == "cancel" else "failed", detail=f"stopped after step {step}")
print(json.dumps({"steps": step, "action": r.requested_action()}))
r.close()
"""


def test_a_cancel_reaches_a_worker_over_the_api_without_a_signal(two_jobs: tuple[DaemonProcess, str, str, str],
                                                                 tmp_path: Path) -> None:
    """A cluster worker gets no signal from the daemon: the cancel comes back with its next ack or poll."""
    d, a, _b, base = two_jobs
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RFT_HOME", None)
    proc = subprocess.Popen([sys.executable, "-c", CONTROL_SCRIPT, base, _mint(d, a), a, str(tmp_path / "w")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            start_new_session=True)  # its own group: nothing the daemon could signal
    try:
        with d.client() as c:
            wait_until(lambda: (c.metrics(a).last_step or 0) >= 3, 60, what="the reporter's first steps")
            assert c.cancel_job(a).status is api.JobStatus.cancelled
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["action"] == "cancel"
    with d.client() as c:
        assert c.metrics(a).last_step == result["steps"]  # every step it took is stored, none after
    store = Store(d.paths.db)
    try:
        row = store.get_job_row(a)
        assert row is not None and row["worker_outcome"] == "cancelled"
    finally:
        store.close()


@pytest.mark.slow
def test_records_left_by_a_worker_that_never_reached_the_daemon_are_sent_by_the_next_one(
        two_jobs: tuple[DaemonProcess, str, str, str], tmp_path: Path) -> None:
    """A worker that ends while the daemon is away leaves its records in the journal; its successor on the same
    scratch dir (a resubmission) sends them first, in order, and resumes after the last step they hold."""
    d, a, _b, base = two_jobs
    token, scratch = _mint(d, a), str(tmp_path / "w")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RFT_REPORT_FINISH_DEADLINE_S": "1", "RFT_REPORT_CLOSE_WAIT_S": "1"}
    env.pop("RFT_HOME", None)

    def run(url: str, n: int) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-c", REPORTER_SCRIPT, url, token, a, scratch, str(n)],
                             capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    assert run(base, 5)["start"] == 1  # online: steps 1..5 delivered; the job's state is saved in the scratch dir
    nobody = f"http://127.0.0.1:{_free_port()}"
    offline = run(nobody, 10)  # the daemon unreachable: starts from the saved state, journals 6..10, gives up
    assert offline["start"] == 6 and offline["delivered"] == 0
    assert _journal_pending(Path(scratch)) >= 5 + 3
    # another submission (its own token) never starts from this one's saved state: it needs the daemon's answer
    other = subprocess.run([sys.executable, "-c", REPORTER_SCRIPT, nobody, "another-submissions-token", a, scratch,
                            "10"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                           env={**env, "RFT_REPORT_CONNECT_DEADLINE_S": "1"})
    assert other.returncode != 0 and "did not answer for 1 s" in other.stderr, other.stderr[-2000:]
    with d.client() as c:
        assert c.metrics(a).last_step == 5
    resumed = run(base, 10)  # back online: sends what the last one left, then has no step left to make
    assert resumed["start"] == 11
    assert _journal_pending(Path(scratch)) == 0
    with d.client() as c:
        assert [m.step for m in c.metrics(a).data] == list(range(1, 11))
        assert [s.step for s in reversed(c.samples(a, limit=100).data)] == list(range(1, 11))
        messages = [e.message for e in c.list_events(a, limit=100).data]
        assert messages.count("driver done") == 3 and messages.count("driver up") == 3


def test_agent_episodes_travel_over_the_api(two_jobs: tuple[DaemonProcess, str, str, str]) -> None:
    """Samples and validation rows with tool trajectories (agent RFT) arrive whole through the reporting API."""
    d, a, _b, base = two_jobs
    turns = [{"role": "assistant", "content": "let me add",
              "tool_calls": [{"id": "c1", "name": "add", "arguments": {"a": 1, "b": 1}, "result": "2",
                              "latency_ms": 1.5}]},
             {"role": "tool", "content": "2", "tool_call_id": "c1", "name": "add"},
             {"role": "assistant", "content": "2"}]
    episode = {"output_messages": turns, "stop_reason": "final_answer"}
    records = [{"kind": "step", "id": "e-1", "step": 1, "values": {"reward": 1.0},
                "samples": [{"prompt": "1+1=", "completion": "2", "reward": 1.0, **episode}]},
               {"kind": "validation", "id": "e-2", "step": 0,
                "rows": [{"row_index": 0, "prompt": "1+1=", "output": "2", "reward": 1.0, **episode}]}]
    with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {_mint(d, a)}"}) as h:
        assert h.post(f"/v1/fine_tuning/jobs/{a}/report/records", json={"records": records}).json()["applied"] == 2
        bad = h.post(f"/v1/fine_tuning/jobs/{a}/report/records", json={"records": [
            {"kind": "step", "id": "e-3", "step": 2, "samples": [{"output_messages": [{"role": "system"}]}]}]})
        assert bad.status_code == 400  # a turn that is not an episode turn is refused, not stored
    with d.client() as c:
        for got in (c.samples(a).data[0], c.validation(a, step=0).data[0]):
            assert got.stop_reason == "final_answer" and got.output_messages is not None
            assert [t.role for t in got.output_messages] == ["assistant", "tool", "assistant"]
            assert got.tool_calls is not None and [(t.name, t.result) for t in got.tool_calls] == [("add", "2")]
        assert c.metrics(a).last_step == 1


@pytest.mark.slow
def test_checkpoints_on_url_storage_are_recorded_there_and_export_from_there(daemon_factory,
                                                                              tmp_path: Path) -> None:
    """RFT_CHECKPOINT_STORAGE as an fsspec URL (file:// here; s3:// on a cluster): the worker copies each
    checkpoint there, the store records the URL, and export fetches it from there."""
    storage = tmp_path / "bucket"
    port = _free_port()
    d: DaemonProcess = daemon_factory(env={
        "RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_WORKER_REPORTER": "http",
        "RFT_WORKER_SCRATCH_ROOT": str(tmp_path / "scratch"), "RFT_CHECKPOINT_STORAGE": f"file://{storage}",
        "RFT_FAKE_STEP_S": "0.01"}, tcp=f"127.0.0.1:{port}")
    with d.client() as c:
        train, valid = _files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=4, eval_interval=2))
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 60, what="the job to end")
        assert done.status is api.JobStatus.succeeded, c.job_log(job.id).lines
        ckpts = c.list_checkpoints(job.id).data
        assert sorted((ck.step_number, ck.path) for ck in ckpts) == [
            (s, f"file://{storage}/{job.id}/step-{s}") for s in (2, 4)]
        assert (storage / job.id / "step-4" / "adapter_config.json").is_file()
        result = c.export_job(job.id, {"output_dir": str(tmp_path / "out"), "checkpoint": "latest"})
        assert result.step == 4 and (Path(result.adapter_dir) / "adapter_config.json").is_file()
        shutil.rmtree(storage / job.id / "step-2")
        from daemon.client import ApiRequestError

        with pytest.raises(ApiRequestError) as gone:
            c.export_job(job.id, {"output_dir": str(tmp_path / "out2"), "checkpoint_step": 2})
        assert gone.value.status_code == 409 and gone.value.error.code == "checkpoint_missing"
        assert f"file://{storage}/{job.id}/step-2" in gone.value.error.message


def test_the_keep_rule_prunes_checkpoints_over_the_api_and_only_the_jobs_own(
        two_jobs: tuple[DaemonProcess, str, str, str], tmp_path: Path) -> None:
    """checkpoints_to_delete / mark_checkpoint_deleted through the reporter: 3 best + latest stay, the rest go;
    a job's token cannot mark another job's checkpoint deleted."""
    from daemon.worker.http_reporter import HttpReporter

    d, a, b, base = two_jobs
    owner = HttpReporter(base, _mint(d, b), b, scratch=tmp_path / "wb")
    other = owner.add_checkpoint(1, str(tmp_path / "b-1"), {"valid_reward_mean": 0.1})
    assert owner.flush(30)
    owner.close()
    r = HttpReporter(base, _mint(d, a), a, scratch=tmp_path / "wa")
    try:
        for step, reward in [(10, 0.5), (20, 0.9), (30, 0.2), (40, 0.7), (50, 0.8), (60, 0.1)]:
            r.add_checkpoint(step, str(tmp_path / f"a-{step}"), {"valid_reward_mean": reward})
        doomed = r.checkpoints_to_delete()  # delivers what is journalled first, then asks
        assert sorted(c.step_number for c in doomed) == [10, 30]  # kept: 20, 50, 40 (best 3) and 60 (latest)
        for ck in doomed:
            r.mark_checkpoint_deleted(ck.id)
        r.mark_checkpoint_deleted(other)  # job b's: the store ignores it for job a's token
        assert r.flush(30) and r.checkpoints_to_delete() == []
    finally:
        r.close()
    with d.client() as c:
        assert sorted(ck.step_number for ck in c.list_checkpoints(a).data) == [20, 40, 50, 60]
        assert [ck.id for ck in c.list_checkpoints(b).data] == [other]
