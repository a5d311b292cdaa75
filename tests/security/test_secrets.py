"""Secrets in a job spec (HTTP tools' and endpoint graders' headers, passwords and keys in URLs) are shown by
no read path -- API, CLI, TUI, events, logs, exports, re-scorings, clusters -- while the worker still sends the
real values to the user's endpoints (a real local HTTP server, a real daemon, the fake worker's real ToolBox
and GraderReward)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from daemon import api
from daemon.store import Store
from tests.daemon.test_cli import cli
from tests.daemon.test_endpoints import raw
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.jobs import job_request, make_files
from tests.support.tool_server import ToolServer

TOOL_KEY = "tool-" + secrets.token_hex(8)
GRADER_KEY = "grader-" + secrets.token_hex(8)
URL_KEY = "query-" + secrets.token_hex(8)
PASSWORD = "pw-" + secrets.token_hex(8)
RESCORE_KEY = "rescore-" + secrets.token_hex(8)
CLUSTER_PASSWORD = "cluster-" + secrets.token_hex(8)
ALL = (TOOL_KEY, GRADER_KEY, URL_KEY, PASSWORD, RESCORE_KEY, CLUSTER_PASSWORD)


def assert_hidden(text: str, where: str) -> None:
    leaked = [s for s in ALL if s in text]
    assert not leaked, f"{where} shows {leaked}"


def endpoint_grader(url: str, key: str) -> dict[str, Any]:
    """A multi grader around an endpoint grader: the headers sit one level down, as users nest them."""
    return {"type": "multi", "name": "svc-multi", "calculate_output": "svc", "graders": {
        "svc": {"type": "endpoint", "name": "svc", "url": url, "max_retries": 1, "headers": {"X-Api-Key": key}}}}


def secret_job(srv: ToolServer, train: str, valid: str) -> dict[str, Any]:
    request = job_request(train, valid, max_steps=2, eval_interval=1, batch_size=2, num_generations=2)
    reinforcement = request["method"]["reinforcement"]
    reinforcement["grader"] = endpoint_grader(srv.url("/grade"), GRADER_KEY)
    reinforcement["tools"] = {
        "add": {"type": "http", "url": srv.url(f"/add?key={URL_KEY}"), "max_retries": 1,
                "headers": {"Authorization": f"Bearer {TOOL_KEY}"}},
        "add_basic": {"type": "http", "url": srv.url("/add").replace("://", f"://agent:{PASSWORD}@"),
                      "max_retries": 1},
    }
    return request


@pytest.mark.slow
def test_no_read_path_shows_a_secret_and_the_worker_still_sends_it(daemon_factory: Any, tmp_path: Path) -> None:
    d: DaemonProcess = daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_FAKE_GRADE": "1",
                                           "RFT_FAKE_TOOL_CALLS": "1", "RFT_CANCEL_GRACE_S": "3"})
    with ToolServer(fail_first=0) as srv, d.client() as c, raw(d) as h:
        train, valid = make_files(c, tmp_path)
        created = h.post("/v1/fine_tuning/jobs", json=secret_job(srv, train, valid))
        assert created.status_code == 200, created.text
        job_id = created.json()["id"]
        done = wait_until(lambda: (j := c.get_job(job_id)).status.is_terminal() and j, 60, what="the job")
        assert done.status is api.JobStatus.succeeded, done.error
        rescored = h.post(f"/v1/fine_tuning/jobs/{job_id}/rescore",
                          json={"grader": endpoint_grader(srv.url("/grade"), RESCORE_KEY), "name": "svc2"})
        assert rescored.status_code == 200, rescored.text
        cluster_storage = tmp_path / "shared"
        cluster_storage.mkdir()
        cluster = h.post("/v1/clusters", json={
            "name": "lab", "kind": "ray", "address": f"http://admin:{CLUSTER_PASSWORD}@127.0.0.1:8265",
            "storage": str(cluster_storage), "report_url": f"http://rft:{CLUSTER_PASSWORD}@10.0.0.1:8000"})
        assert cluster.status_code == 200, cluster.text

        # the API: the job (create, get, list, control), events, log, re-scorings, clusters
        shown = {"create": created.text, "rescore": rescored.text, "cluster add": cluster.text}
        j = f"/v1/fine_tuning/jobs/{job_id}"
        for path in (j, "/v1/fine_tuning/jobs", f"{j}/events?limit=1000", f"{j}/log?lines=100000", f"{j}/rescore",
                     f"{j}/checkpoints", f"{j}/samples", f"{j}/validation", "/v1/clusters", "/v1/clusters/lab"):
            r = h.get(path)
            assert r.status_code == 200, (path, r.text)
            shown[path] = r.text
        shown["cancel (a finished job: 409 names it)"] = h.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").text
        for where, text in shown.items():
            assert_hidden(text, where)
        job = json.loads(shown[f"/v1/fine_tuning/jobs/{job_id}"])
        tools = job["snapshot"]["tools"]
        # the names stay (a user can see which headers go out), the values do not
        assert tools["add"]["headers"] == {"Authorization": "***"} and tools["add"]["url"].endswith("/add?key=***")
        assert "agent:***@127.0.0.1" in tools["add_basic"]["url"]
        assert job["method"]["reinforcement"]["grader"]["graders"]["svc"]["headers"] == {"X-Api-Key": "***"}
        assert job["snapshot"]["grader"]["graders"]["svc"]["headers"] == {"X-Api-Key": "***"}
        assert json.loads(shown["/v1/clusters/lab"])["address"] == "http://admin:***@127.0.0.1:8265"

        # the CLI
        for args in (("jobs", "show", job_id), ("jobs", "show", job_id, "--json"), ("jobs", "list", "--json"),
                     ("jobs", "events", job_id, "--json"), ("daemon", "logs"),
                     ("clusters", "list", "--json"), ("clusters", "show", "lab")):
            out = cli(d.home, *args)
            assert_hidden(out.stdout + out.stderr, "rft-tui " + " ".join(args))
        out_dir = tmp_path / "export"
        cli(d.home, "jobs", "export", job_id, str(out_dir))
        exported = list(out_dir.rglob("*"))
        assert any(p.name == "README.md" for p in exported)
        for p in exported:
            if p.is_file():
                assert_hidden(p.read_text(encoding="utf-8", errors="replace"), str(p))
        card = (out_dir / "README.md").read_text()
        assert '"X-Api-Key": "***"' in card  # the card keeps the grader's shape, masked

        # files the daemon and worker wrote (logs, checkpoints); only the stores (rft.db, clusters.json, both
        # owner-only) keep the real values, for the worker and the engines
        for p in d.home.rglob("*"):
            if p.is_file() and not p.name.startswith(("rft.db", "clusters.json")):
                assert_hidden(p.read_text(encoding="utf-8", errors="replace"), str(p))

        # a cluster worker reads the real spec with its job's own token (the only reader besides the store)
        store = Store(d.paths.db)
        try:
            token = store.mint_job_token(job_id)
        finally:
            store.close()
        spec = h.get(f"/v1/fine_tuning/jobs/{job_id}/report/spec", headers={"Authorization": f"Bearer {token}"})
        assert spec.status_code == 200, spec.text
        assert spec.json()["tools"]["add"]["headers"] == {"Authorization": f"Bearer {TOOL_KEY}"}

    # the worker (and the daemon's re-scoring) sent the real values to the endpoints
    seen = srv.seen
    tool_calls = [hd for path, hd in seen if path.startswith("/add")]
    assert any(path == f"/add?key={URL_KEY}" and hd.get("Authorization") == f"Bearer {TOOL_KEY}"
               for path, hd in seen), seen
    import base64

    basic = "Basic " + base64.b64encode(f"agent:{PASSWORD}".encode()).decode()
    assert any(hd.get("Authorization") == basic for hd in tool_calls), tool_calls
    graded = [hd.get("X-Api-Key") for path, hd in seen if path == "/grade"]
    assert GRADER_KEY in graded and RESCORE_KEY in graded


@pytest.mark.slow
async def test_tui_job_screen_shows_no_secret(daemon_factory: Any, tmp_path: Path) -> None:
    """Every tab of the Job screen at 80x24, and the job the TUI holds, carry the masks only."""
    from rft_tui.screens.job import TABS, JobScreen
    from tests.tui.conftest import make_app, until

    d: DaemonProcess = daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker"})
    with ToolServer(fail_first=0) as srv, d.client() as c:
        train, valid = make_files(c, tmp_path)
        job = c.create_job(secret_job(srv, train, valid))
        wait_until(lambda: c.get_job(job.id).status.is_terminal(), 60, what="the job")
    app = make_app(d, clock=time.time)
    async with app.run_test(size=(80, 24)) as pilot:
        app.action_open_job(job.id)
        await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.view.job is not None)
        screen = app.screen
        assert screen.view.job is not None and screen.view.job.snapshot is not None
        assert_hidden(screen.view.job.model_dump_json(), "the TUI's job")
        assert screen.view.job.snapshot.grader["graders"]["svc"]["headers"] == {"X-Api-Key": "***"}

        def shown(tab: str) -> Callable[[], bool]:
            return lambda: screen.active_tab == tab

        for tab in TABS:
            screen.action_show_tab(tab)
            await until(pilot, shown(tab), what=f"the {tab} tab")
            await pilot.pause()
            assert_hidden(app.export_screenshot(), f"the {tab} tab")
