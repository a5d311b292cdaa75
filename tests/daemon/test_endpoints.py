"""Every endpoint's happy path and bad-input path, against a real daemon over its real socket."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from daemon import api
from daemon.client import ApiRequestError, Client
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.jobs import EXACT_GRADER, job_request, make_files


def raw(d: DaemonProcess) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=d.socket), base_url="http://rft", timeout=30)


def assert_openai_error(resp: httpx.Response, status: int, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]


def test_health(module_fake_worker_daemon: DaemonProcess) -> None:
    with module_fake_worker_daemon.client() as c:
        h = c.health()
    assert h.pid == module_fake_worker_daemon.pid
    assert h.status == "ok" and h.uptime_s >= 0


def test_files_upload_import_list_retrieve_content(fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    data = b'{"messages":[{"role":"user","content":"1+2="}],"answer":"3"}\n'
    (tmp_path / "a.jsonl").write_bytes(data)
    with fake_worker_daemon.client() as c, raw(fake_worker_daemon) as h:
        up = c.upload_file(str(tmp_path / "a.jsonl"))
        assert up.object == "file" and up.bytes == len(data) and up.filename == "a.jsonl" and up.rows == 1
        again = c.import_file(str(tmp_path / "a.jsonl"))
        assert again.id == up.id  # content-addressed
        assert [f.id for f in c.list_files().data] == [up.id]
        assert c.get_file(up.id).sha256 == up.sha256
        assert h.get(f"/v1/files/{up.id}/content").content == data
        assert_openai_error(h.get("/v1/files/file-nope"), 404, "file_id")
        assert_openai_error(h.get("/v1/files/file-nope/content"), 404)
        assert_openai_error(h.post("/v1/files/import", json={"path": str(tmp_path / "missing.jsonl")}), 400, "path")
        assert_openai_error(h.post("/v1/files/import", json={"path": 5}), 400, "path")
        assert_openai_error(h.post("/v1/files/import", json={}), 400, "path")
        assert_openai_error(h.post("/v1/files", files={"file": ("x.jsonl", data)}, data={"purpose": "nope"}), 400,
                            "purpose")
        assert_openai_error(h.post("/v1/files", data={"purpose": "fine-tune"}), 400, "file")
        assert_openai_error(h.get("/v1/files", params={"limit": 0}), 400, "limit")
        assert_openai_error(h.get("/v1/files", params={"limit": "many"}), 400, "limit")


@pytest.mark.slow
def test_job_lifecycle_endpoints(fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    with fake_worker_daemon.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=6, eval_interval=3))
        assert job.object == "fine_tuning.job" and job.model == "builtin:tiny-arith" and job.seed == 7
        assert job.resolved_hyperparameters and job.resolved_hyperparameters.max_steps == 6
        assert job.snapshot and job.snapshot.training_file.sha256 and job.snapshot.grader == EXACT_GRADER
        done = wait_until(lambda: (j := c.get_job(job.id)).status.is_terminal() and j, 60, what="job to finish")
        assert done.status is api.JobStatus.succeeded, done.error
        assert done.fine_tuned_model == f"ft:fake:{job.id}"
        assert [m.step for m in c.metrics(job.id).data] == [1, 2, 3, 4, 5, 6]
        assert [m.step for m in c.metrics(job.id, after_step=4).data] == [5, 6]
        v = c.validation(job.id)
        assert v.steps == [0, 3, 6] and v.step == 6 and len(v.data) == 10
        assert c.validation(job.id, step=0).data[0].step == 0
        ckpts = {ck.step_number: ck for ck in c.list_checkpoints(job.id).data}
        assert set(ckpts) == {3, 6}
        assert ckpts[6].kept_because == ["latest", "best #1"] and ckpts[3].kept_because == ["best #2"]
        latest, earlier = ckpts[6].metrics.valid_reward_mean, ckpts[3].metrics.valid_reward_mean
        assert latest is not None and earlier is not None and latest > earlier
        assert c.samples(job.id).data[0].completion == "2"
        events = c.list_events(job.id, limit=100).data
        kinds = [e.type for e in events]
        assert "metrics" in kinds and "message" in kinds
        metric_ev = next(e for e in events
                         if e.type == "metrics" and e.data and "valid_reward_mean" in e.data["scores"])
        assert metric_ev.data is not None and {"step", "total_steps", "scores"} <= set(metric_ev.data)
        messages = [e.message for e in reversed(events)]
        assert messages[0] == "Validating training file" and "Job succeeded" in messages
        page1 = c.list_events(job.id, limit=3)
        page2 = c.list_events(job.id, limit=3, after=page1.last_id)
        assert page1.has_more and not {e.id for e in page1.data} & {e.id for e in page2.data}
        assert c.job_log(job.id).lines
        jobs = c.list_jobs()
        assert [j.id for j in jobs.data] == [job.id]
        with pytest.raises(ApiRequestError) as e:
            c.cancel_job(job.id)
        assert e.value.status_code == 409


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory):
    """One daemon for the many read-only bad-input cases (each case changes nothing in the store)."""
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="rft-shared-"))
    d = DaemonProcess(home, env={"RFT_WORKER_MODULE": "tests.support.fake_worker"}).start()
    with d.client() as c:
        train, valid = make_files(c, tmp_path_factory.mktemp("files"))
    yield d, train, valid
    d.stop()


@pytest.mark.parametrize("mutate, param", [
    (lambda r: r.pop("model"), "model"),
    (lambda r: r.update(model=3), "model"),
    (lambda r: r.update(model="builtin:nope"), "model"),
    (lambda r: r.update(training_file="file-does-not-exist"), "training_file"),
    (lambda r: r.update(validation_file="file-does-not-exist"), "validation_file"),
    (lambda r: r["method"].update(type="supervised"), "method.type"),
    (lambda r: r["method"]["reinforcement"].update(grader={"type": "nope"}), "method.reinforcement.grader"),
    (lambda r: r["method"]["reinforcement"]["hyperparameters"].update(batch_size=-1),
     "method.reinforcement.hyperparameters.batch_size"),
    (lambda r: r["method"]["reinforcement"]["hyperparameters"].update(n_epochs="lots"),
     "method.reinforcement.hyperparameters.n_epochs"),
    (lambda r: r["method"]["reinforcement"]["hyperparameters"].update(not_a_knob=1),
     "method.reinforcement.hyperparameters.not_a_knob"),
    # JSON types as declared (schemathesis ST201): a boolean is not a number, 0 is not a boolean
    (lambda r: r["method"]["reinforcement"]["hyperparameters"].update(lora_dropout=False),
     "method.reinforcement.hyperparameters.lora_dropout"),
    (lambda r: r["method"]["reinforcement"]["hyperparameters"].update(gradient_checkpointing=0),
     "method.reinforcement.hyperparameters.gradient_checkpointing"),
    (lambda r: r.update(suffix="has spaces!"), "suffix"),
    (lambda r: r.update(unknown_field=1), "unknown_field"),
])
def test_create_job_bad_input(shared_daemon: tuple[DaemonProcess, str, str], mutate, param: str) -> None:
    d, train, valid = shared_daemon
    with d.client() as c, raw(d) as h:
        req = job_request(train, valid)
        mutate(req)
        before = [j.id for j in c.list_jobs().data]  # (test_json_types_as_declared_and_huge_numbers made one?)
        assert_openai_error(h.post("/v1/fine_tuning/jobs", json=req), 400, param)
        assert [j.id for j in c.list_jobs().data] == before  # the refused request made no job


def test_malformed_and_huge_bodies(shared_daemon: tuple[DaemonProcess, str, str]) -> None:
    with raw(shared_daemon[0]) as h:
        assert_openai_error(h.post("/v1/fine_tuning/jobs", content=b"{not json",
                                   headers={"content-type": "application/json"}), 400)
        assert_openai_error(h.post("/v1/fine_tuning/jobs", content=b"[]",
                                   headers={"content-type": "application/json"}), 400)
        assert_openai_error(h.post("/v1/fine_tuning/jobs", content=b"",
                                   headers={"content-type": "application/json"}), 400)
        huge = b'{"model": "' + b"x" * (9 * 1024 * 1024) + b'"}'
        assert_openai_error(h.post("/v1/fine_tuning/jobs", content=huge,
                                   headers={"content-type": "application/json"}), 413)
        assert_openai_error(h.post("/v1/fine_tuning/alpha/graders/run", json={"grader": EXACT_GRADER}), 400,
                            "model_sample")
        assert_openai_error(h.get("/v1/nope"), 404)
        assert_openai_error(h.delete("/v1/fine_tuning/jobs"), 405)
        # the daemon is still fine
        assert h.get("/v1/health").status_code == 200


@pytest.mark.parametrize("path", ["", "/events", "/checkpoints", "/metrics", "/validation", "/samples", "/log"])
def test_unknown_job_is_404(shared_daemon: tuple[DaemonProcess, str, str], path: str) -> None:
    with raw(shared_daemon[0]) as h:
        err = assert_openai_error(h.get(f"/v1/fine_tuning/jobs/ftjob-nope{path}"), 404, "fine_tuning_job_id")
        assert err["code"] == "fine_tuning_job_not_found"


@pytest.mark.parametrize("action", ["cancel", "pause", "resume"])
def test_control_unknown_job_is_404(shared_daemon: tuple[DaemonProcess, str, str], action: str) -> None:
    with raw(shared_daemon[0]) as h:
        assert_openai_error(h.post(f"/v1/fine_tuning/jobs/ftjob-nope/{action}"), 404)


def test_query_parameter_types(module_fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    with module_fake_worker_daemon.client() as c, raw(module_fake_worker_daemon) as h:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(job_request(train, valid, max_steps=2))
        assert_openai_error(h.get(f"/v1/fine_tuning/jobs/{job.id}/metrics", params={"after_step": "x"}), 400,
                            "after_step")
        assert_openai_error(h.get(f"/v1/fine_tuning/jobs/{job.id}/events", params={"limit": 10**9}), 400, "limit")
        assert_openai_error(h.get(f"/v1/fine_tuning/jobs/{job.id}/events", params={"order": "up"}), 400, "order")
        assert_openai_error(h.get("/v1/fine_tuning/jobs", params={"status": "sleeping"}), 400, "status")
        wait_until(lambda: c.get_job(job.id).status.is_terminal(), 60, what="job end")
        assert_openai_error(h.get(f"/v1/fine_tuning/jobs/{job.id}/validation", params={"step": 99}), 404, "step")


def test_jobs_list_paging(fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    with fake_worker_daemon.client() as c:
        train, valid = make_files(c, tmp_path)
        ids = [c.create_job(job_request(train, valid, max_steps=1)).id for _ in range(5)]
        first = c.list_jobs(limit=2)
        assert [j.id for j in first.data] == ids[::-1][:2] and first.has_more
        second = c.list_jobs(limit=2, after=first.last_id)
        assert [j.id for j in second.data] == ids[::-1][2:4]
        last = c.list_jobs(limit=2, after=second.last_id)
        assert [j.id for j in last.data] == ids[:1] and not last.has_more


def test_graders_run_and_validate_endpoints(module_fake_worker_daemon: DaemonProcess) -> None:
    with module_fake_worker_daemon.client() as c, raw(module_fake_worker_daemon) as h:
        res = c.run_grader(EXACT_GRADER, "46", {"answer": "46"})
        assert res.reward == 1.0 and res.metadata.type == "string_check"
        assert c.run_grader(EXACT_GRADER, "45", {"answer": "46"}).reward == 0.0
        missing = c.run_grader(EXACT_GRADER, "45", {})
        assert missing.reward == 0.0 and missing.metadata.errors.invalid_variable_error
        ok = c.validate_grader(EXACT_GRADER)
        assert ok.item_fields == ["answer"]
        bad = {**EXACT_GRADER, "operation": "approximately"}
        assert_openai_error(h.post("/v1/fine_tuning/alpha/graders/validate", json={"grader": bad}), 400, "grader")
        assert_openai_error(h.post("/v1/fine_tuning/alpha/graders/run",
                                   json={"grader": bad, "model_sample": "x"}), 400, "grader")


def test_stream_announces_status_and_metric_steps(module_fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    import threading

    seen: list[api.StreamEvent] = []
    with module_fake_worker_daemon.client() as c:
        train, valid = make_files(c, tmp_path)
        stream_client = module_fake_worker_daemon.client()

        def listen() -> None:
            for ev in stream_client.stream():
                seen.append(ev)
                if ev.type is api.StreamEventType.job_status and ev.status and ev.status.is_terminal():
                    return

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        wait_until(lambda: module_fake_worker_daemon.client().health() and True, 5)
        job = c.create_job(job_request(train, valid, max_steps=5, eval_interval=5))
        t.join(timeout=60)
        assert not t.is_alive(), "the stream never announced the job's end"
        stream_client.close()
    statuses = [e.status for e in seen if e.type is api.StreamEventType.job_status and e.job_id == job.id]
    assert statuses[0] is api.JobStatus.queued and statuses[-1] is api.JobStatus.succeeded
    assert api.JobStatus.running in statuses
    steps: list[int] = []
    for e in seen:
        if e.type is api.StreamEventType.job_metrics and e.job_id == job.id:
            assert e.step is not None  # a metrics event names its step
            steps.append(e.step)
    assert steps and steps[-1] == 5 and steps == sorted(steps)
    assert any(e.type is api.StreamEventType.job_validation for e in seen)


def test_client_errors_are_typed(rft_home: Path) -> None:
    from daemon.client import DaemonNotRunning, StaleDaemonStatus
    from daemon.paths import Paths

    paths = Paths.resolve(rft_home).ensure()
    with pytest.raises(DaemonNotRunning):
        Client.connect(home=rft_home)
    paths.status_file.write_text(json.dumps({"pid": 2**22 + 12345, "socket": str(paths.socket), "version": "0",
                                             "started_at": 0}))
    with pytest.raises(StaleDaemonStatus):
        Client.connect(home=rft_home)
    assert not paths.status_file.exists()


@pytest.mark.slow
def test_cosine_grader_runs_without_torch_in_the_daemon(module_fake_worker_daemon: DaemonProcess) -> None:
    pytest.importorskip("sentence_transformers")
    import psutil

    cosine = {"type": "text_similarity", "name": "cos", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "evaluation_metric": "cosine"}
    with module_fake_worker_daemon.client(timeout=300) as c:
        same = c.run_grader(cosine, "The cat sat on the mat.", {"answer": "The cat sat on the mat."})
        other = c.run_grader(cosine, "Quarterly revenue grew.", {"answer": "The cat sat on the mat."})
    assert same.reward > 0.99 and other.reward < same.reward
    maps = open(f"/proc/{module_fake_worker_daemon.pid}/maps").read()
    assert "libtorch" not in maps  # the embedding model ran in a helper process
    children = psutil.Process(module_fake_worker_daemon.pid).children()  # ... which is still warm for the next call
    assert any("libtorch" in _maps(p.pid) for p in children), children


def _maps(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/maps").read()
    except OSError:  # a child that has just exited (a job's worker)
        return ""


def test_json_types_as_declared_and_huge_numbers(shared_daemon: tuple[DaemonProcess, str, str]) -> None:
    """Found by schemathesis: bool/number confusion was accepted; 1e308 and '~nobody' were 500s."""
    d, train, valid = shared_daemon
    with d.client() as c, raw(d) as h:
        req = job_request(train, valid)
        req["method"]["reinforcement"]["hyperparameters"].update(compute_multiplier=1.1e308, max_steps=1)
        resp = h.post("/v1/fine_tuning/jobs", json=req)
        assert resp.status_code in (200, 400), resp.text  # never a 500
        if resp.status_code == 200:
            resolved = c.get_job(resp.json()["id"]).resolved_hyperparameters
            assert resolved is not None and resolved.num_generations == 256  # MAX_AUTO_GENERATIONS
            c.cancel_job(resp.json()["id"])
        err = assert_openai_error(h.post("/v1/clusters", json={"name": "c1", "kind": "slurm",
                                                                 "storage": "~no-such-user-here/x"}), 400, "storage")
        assert "home directory" in err["message"]
        body = {"records": [{"kind": "alarm", "name": "stalled", "severity": "warning", "cleared": 0}]}
        for job in c.list_jobs().data:
            r = h.post(f"/v1/fine_tuning/jobs/{job.id}/report/records", json=body)
            assert r.status_code in (400, 401, 403), r.text


@pytest.mark.slow
def test_json_type_confusion_rules() -> None:
    from typing import Literal

    conf = api.json_type_confusion
    assert conf(int, False) == "a boolean is not a number"
    assert conf(float | None, True) == "a boolean is not a number"
    assert conf(bool, 0) == "0 is not a boolean: use true or false"
    assert conf(bool, "yes") is not None
    assert conf(Literal["auto"] | bool, "auto") is None and conf(Literal["auto"] | bool, 1) is not None
    assert conf(list[int], [1, True]) == "a boolean is not a number"
    assert conf(dict[str, float], {"a": 1, "b": False}) == "a boolean is not a number"
    # what stays lax on purpose: numbers as numbers, strings for floats (YAML's "1e-4"), bools as bools
    assert conf(float, 1) is None and conf(float, "1e-4") is None and conf(bool | None, None) is None
    assert conf(int | Literal["auto"], 8) is None and conf(bool, True) is None
