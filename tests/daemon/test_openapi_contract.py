"""The API contract holds: schemathesis drives a real daemon over TCP (with its token) from `/openapi.json`.

Every answer must be one the schema declares — status code, content type, body shape (errors included) —
and no request may get a 5xx. Checks: all of schemathesis's, except `positive_data_acceptance`: a
schema-valid request can name a file id, path or model that does not exist, which the daemon answers
with a 400 naming the field (as OpenAI does for a missing `training_file`); no schema can say which ids
exist. Its mirror, `negative_data_rejection` (schema-invalid requests are refused), does run.

Left out of the fuzzing, each for a reason:
- `POST /v1/shutdown` would stop the daemon under test.
- `GET /v1/stream` never ends (server-sent events); its media type is checked below instead.
- `POST /v1/fine_tuning/jobs/{id}/export` writes a model into whatever absolute directory the request
  names and runs a torch subprocess: fuzzed paths would litter the machine.
- `POST /v1/fine_tuning/preflight` samples the real model in a torch subprocess (a minute or more here)
  once schemathesis pairs a stored file with the model it saw in a job, which it does; its 400s are
  checked below instead.
- `POST /v1/clusters/{name}/test` submits a job to whatever Ray address or Slurm command a fuzzed cluster
  names, and waits for it (tests/clusters test it against real engines).
Jobs run `tests/support/fake_worker.py`, so a job schemathesis manages to create finishes in a second
without training; hub look-ups are offline, so generated model names fail fast with a 400.
`--max-response-time` is generous: the first cosine-similarity grader call starts a torch helper process.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from daemon import api
from daemon.grader_store import is_grader_file_name
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.jobs import EXACT_GRADER, arithmetic_rows, job_request, write_jsonl

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXCLUDED = ["/v1/shutdown", "/v1/stream", "/v1/fine_tuning/jobs/{job_id}/export", "/v1/fine_tuning/preflight",
            "/v1/clusters/{name}/test"]
MAX_EXAMPLES = int(os.environ.get("RFT_CONTRACT_EXAMPLES", "20"))  # per operation and phase
MAX_TIME_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tcp_daemon(daemon_factory, tmp_path: Path) -> tuple[DaemonProcess, str, str]:
    """A daemon on TCP with a stored file and a finished (fake-worker) job, so ids lead somewhere."""
    port = _free_port()
    d = daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_FAKE_STEP_S": "0.01",
                            "HF_HUB_OFFLINE": "1", "RFT_CANCEL_GRACE_S": "3"}, tcp=f"127.0.0.1:{port}")
    with d.client() as c:
        train = c.import_file(str(write_jsonl(tmp_path / "train.jsonl", arithmetic_rows(10, 30)))).id
        valid = c.import_file(str(write_jsonl(tmp_path / "valid.jsonl", arithmetic_rows(60, 10)))).id
        job = c.create_job(job_request(train, valid, max_steps=4, eval_interval=2))
        wait_until(lambda: c.get_job(job.id).status.is_terminal(), 60, what="the fake job to finish")
    (d.paths.graders / "exact.json").write_text(json.dumps(EXACT_GRADER))
    return d, f"http://127.0.0.1:{port}", d.paths.token_file.read_text().strip()


@pytest.mark.slow  # a few minutes: ~30 operations x 4 phases
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
        tcp_daemon: tuple[DaemonProcess, str, str], tmp_path: Path) -> None:
    d, base, token = tcp_daemon
    report_dir = tmp_path / "report"
    cmd = [str(SCHEMATHESIS), "run", f"{base}/openapi.json", "--header", f"Authorization: Bearer {token}",
           "--checks", "all", "--exclude-checks", "positive_data_acceptance",
           "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_TIME_S), "--workers", "1",
           "--request-timeout", "120", "--max-response-time", "90",
           "--seed", "20261130", "--generation-database", "none",
           "--no-color", "--report", "json", "--report-dir", str(report_dir)]
    for path in EXCLUDED:
        cmd += ["--exclude-path", path]
    # one worker: Python 3.11.7's ast is not thread-safe (hypothesis parses lambdas while generating)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=MAX_TIME_S + 120, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    reports = sorted(report_dir.glob("*.json"))
    assert reports, f"schemathesis wrote no report (exit {proc.returncode}):\n{out[-6000:]}"
    report: dict[str, Any] = json.loads(reports[-1].read_text())
    failures = {f["code"]: f["count"] for f in report.get("failures") or []}
    cases = report["test_cases"]["generated"]
    print(f"schemathesis: {cases} cases, {report['operations']['tested']} operations, failures {failures}, "
          f"errors {report.get('errors')}, {report['running_time']:.0f} s")
    assert report["operations"]["tested"] >= 25, report["operations"]
    assert cases >= 25 * MAX_EXAMPLES // 2
    assert not failures and not report.get("errors") and proc.returncode == 0, out[-12000:]
    assert "Internal error" not in d.log()


@pytest.mark.slow
def test_declared_media_types_are_served(tcp_daemon: tuple[DaemonProcess, str, str]) -> None:
    """JSONL content and the event stream arrive as the schema says (the stream is not fuzzed)."""
    _d, base, token = tcp_daemon
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=auth, timeout=30) as h:
        doc = h.get("/openapi.json").json()
        content_doc = doc["paths"]["/v1/files/{file_id}/content"]["get"]["responses"]["200"]["content"]
        stream_doc = doc["paths"]["/v1/stream"]["get"]["responses"]["200"]["content"]
        file_id = h.get("/v1/files").json()["data"][0]["id"]
        content = h.get(f"/v1/files/{file_id}/content")
        assert content.headers["content-type"].split(";")[0] in content_doc
        assert json.loads(content.text.splitlines()[0])["answer"]
        with h.stream("GET", "/v1/stream") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].split(";")[0] in stream_doc
        assert httpx.get(f"{base}/v1/health").status_code == 401  # no token: refused, as declared
        assert "401" in doc["paths"]["/v1/health"]["get"]["responses"]


@pytest.mark.slow
def test_error_bodies_match_the_declared_error_shape(tcp_daemon: tuple[DaemonProcess, str, str]) -> None:
    """Validation errors are 400s in OpenAI's shape (never FastAPI's 422), and 422 is declared nowhere."""
    _d, base, token = tcp_daemon
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as h:
        doc = h.get("/openapi.json").json()
        bad = h.get("/v1/fine_tuning/jobs", params={"limit": 0})
        assert bad.status_code == 400
        err = api.ErrorResponse.model_validate(bad.json()).error
        assert err.param == "limit"
        for route in ("/v1/fine_tuning/jobs", "/v1/fine_tuning/preflight"):
            tilde = h.post(route, json={**job_request("file-x", None), "model": "~nosuchuser/m"})
            assert tilde.status_code == 400 and tilde.json()["error"]["param"] == "model"
            assert "400" in doc["paths"][route]["post"]["responses"]
        for route, body in (("/v1/files/import", {"path": "~nosuchuser/x.jsonl"}),
                            ("/v1/files/validate", {"path": "~nosuchuser/x.jsonl"}),
                            ("/v1/files/import", {"path": "x" * 300})):  # a name over NAME_MAX
            answer = h.post(route, json=body)
            assert answer.status_code == 400 and answer.json()["error"]["param"] == "path", answer.text
        missing = h.post("/v1/fine_tuning/preflight", json=job_request("file-missing", None))
        assert missing.status_code == 400 and missing.json()["error"]["param"] == "training_file"
        assert api.ErrorResponse.model_validate(missing.json()).error.code == "file_not_found"
    declared = {code for ops in doc["paths"].values() for op in ops.values() for code in op["responses"]}
    assert "422" not in declared and "HTTPValidationError" not in doc["components"]["schemas"]
    assert doc["components"]["schemas"]["Grader"]["discriminator"]["propertyName"] == "type"


@pytest.mark.parametrize("name", ["a.json", "A.YAML", "x.yml", "p.py", "a-.json", "a.-b.py", "1.json.py",
                                  "a" * 125 + ".py", "a" * 126 + ".py", "a..json", ".json", "a.json\n",
                                  "a/b.json", "a.txt", "a.", "é.json", "a b.json", "-a.json"])
def test_grader_file_name_pattern_matches_the_store_rule(name: str) -> None:
    """The declared pattern (schema only) and GraderStore's check agree, so the contract tells the truth."""
    declared = bool(re.fullmatch(api.GRADER_FILE_NAME_PATTERN, name)) and len(name) <= api.MAX_GRADER_FILE_NAME
    assert declared == is_grader_file_name(name)
