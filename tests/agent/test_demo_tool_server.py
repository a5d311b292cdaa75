"""The tools demo's `add` endpoint (rft_tui.tool_server): what the worker's HTTP tool client gets from it, and the
process that `rft-tui demo --task tools` starts: it says its port, serves, and goes away with its job."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from daemon import api
from daemon.worker.tool_calls import parse_turn
from daemon.worker.tool_runtime import ToolBox, ToolRequest
from rft_tui.tool_server import AddToolServer
from tests.support.daemon_proc import DaemonProcess, wait_until
from tests.support.jobs import job_request, make_files

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def add_server() -> Iterator[AddToolServer]:
    server = AddToolServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_the_worker_gets_exact_sums_and_errors_it_can_show_the_model(add_server: AddToolServer) -> None:
    """Through the worker's own ToolBox: a call the model wrote in the contract format, and bad arguments."""
    spec = api.HttpToolRuntime(url=add_server.url, timeout_s=5, max_retries=0)
    schemas = {"add": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}
    turn = parse_turn('<tool_call>\n{"name": "add", "arguments": {"a": 123, "b": 456}}\n</tool_call>'
                      '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>')
    box = ToolBox({"add": spec})
    try:
        records = box.run([ToolRequest(rollout_id="r-1", call_id=f"call_{k}", call=call, item={"answer": "579"},
                                       schemas=schemas) for k, call in enumerate(turn.calls)])
    finally:
        box.close()
    assert records[0].result == "579" and records[0].error is None and records[0].latency_ms is not None
    assert records[1].result is None and "missing argument(s): b" in (records[1].error or "")
    assert (add_server.calls, add_server.refused) == (1, 1)
    bad = httpx.post(add_server.url, content=b"not json")
    assert bad.status_code == 400 and bad.text.startswith("Expecting value")
    floats = httpx.post(add_server.url, json={"arguments": {"a": 1.5, "b": True}})
    assert floats.status_code == 400 and floats.text == "a and b must be integers"


def start_server_process(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "rft_tui.tool_server", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PORT "), line
    return proc, int(line.split()[1])


@pytest.mark.slow
def test_the_process_serves_until_its_job_ends(fake_worker_daemon: DaemonProcess, tmp_path: Path) -> None:
    proc, port = start_server_process("--socket", fake_worker_daemon.socket)
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/add", json={"name": "add", "arguments": {"a": 2, "b": 40}})
        assert answer.status_code == 200 and answer.text == "42"
        with fake_worker_daemon.client() as c:
            train, valid = make_files(c, tmp_path)
            job = c.create_job(job_request(train, valid, max_steps=400))
            assert proc.stdin is not None
            proc.stdin.write(job.id + "\n")
            proc.stdin.close()
            wait_until(lambda: c.get_job(job.id).status is api.JobStatus.running, timeout=60, what="job running")
            assert proc.poll() is None  # still serving while the job runs
            httpx.post(f"http://127.0.0.1:{port}/add", json={"arguments": {"a": 1, "b": 1}}).raise_for_status()
            c.cancel_job(job.id)
            assert proc.wait(timeout=60) == 0  # gone once the job is over
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_process_exits_when_no_job_comes() -> None:
    proc, _ = start_server_process()
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_forever_serves_until_interrupted_and_a_taken_port_is_one_line() -> None:
    """By hand (`--forever`, for `jobs create --tools examples/tools-arith/tools.json`): until Ctrl+C."""
    import signal

    proc, port = start_server_process("--forever")
    try:
        assert httpx.post(f"http://127.0.0.1:{port}/add", json={"arguments": {"a": 5, "b": 6}}).text == "11"
        taken = subprocess.run([sys.executable, "-m", "rft_tui.tool_server", "--port", str(port), "--forever"],
                               capture_output=True, text=True, timeout=30, cwd=REPO)
        assert taken.returncode == 1 and taken.stderr.startswith(f"cannot listen on 127.0.0.1:{port}: ")
        assert "Traceback" not in taken.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
