"""Request limits that hold against hostile clients: streamed byte limits (chunked or not), stalled bodies,
JSON nesting depth in bodies and in dataset rows, `~user` paths. Real daemon, real socket."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from daemon.server import MAX_JSON_BODY
from tests.support.daemon_proc import DaemonProcess, module_daemon
from tests.support.jobs import EXACT_GRADER, arithmetic_rows, write_jsonl

MB = 1024 * 1024
BODY_TIMEOUT_S = 2.0


GUARDED_ENV = {"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_BODY_READ_TIMEOUT_S": str(BODY_TIMEOUT_S)}


@pytest.fixture
def guarded_daemon(daemon_factory) -> DaemonProcess:
    """A daemon of the test's own whose stalled-body timeout is lowered so the test sees it quickly: for the
    memory tests (RSS growth from a fresh daemon's baseline; another test's freed heap would hide growth)."""
    return daemon_factory(env=GUARDED_ENV)


@pytest.fixture(scope="module")
def shared_guarded_daemon() -> Iterator[DaemonProcess]:
    """The same daemon shared by the module's tests that look only at their own requests' answers."""
    yield from module_daemon("rft-rq-", GUARDED_ENV)


def _http(d: DaemonProcess, timeout: float = 30) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=d.socket), base_url="http://rft", timeout=timeout)


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_chunked_body_over_the_limit_is_refused_as_it_streams(guarded_daemon: DaemonProcess) -> None:
    """64 MB sent chunked (no Content-Length) to a JSON route: 413 quickly, daemon memory stays flat."""
    d = guarded_daemon
    baseline = _rss(d.pid)
    peak = baseline
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent, peak
        chunk = b"[" + b"0," * (512 * 1024 - 1) + b"0"  # 1 MiB of valid-looking JSON per chunk
        for _ in range(64):
            sent += len(chunk)
            peak = max(peak, _rss(d.pid))
            yield chunk

    started = time.monotonic()
    with _http(d) as h:
        resp = h.post("/v1/fine_tuning/alpha/graders/validate", content=body(),
                      headers={"content-type": "application/json"})
    elapsed = time.monotonic() - started
    assert resp.status_code == 413, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == "request_too_large"
    assert str(MAX_JSON_BODY) in err["message"]
    print(f"chunked 64 MB: 413 after {elapsed:.2f} s; daemon RSS {baseline / MB:.0f} MB -> peak {peak / MB:.0f} MB")
    assert elapsed < 20
    assert peak - baseline < 48 * MB, f"daemon RSS grew {(peak - baseline) / MB:.0f} MB"
    with _http(d) as h:  # and it keeps serving
        assert h.get("/v1/health").status_code == 200


@pytest.mark.slow
def test_stalled_body_is_answered_408_and_closed(shared_guarded_daemon: DaemonProcess) -> None:
    """A client that sends headers and a few bytes, then nothing: 408 after the timeout, connection closed."""
    stalled_before = shared_guarded_daemon.log().count("stalled")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(BODY_TIMEOUT_S * 10)
    s.connect(shared_guarded_daemon.socket)
    s.sendall(b"POST /v1/fine_tuning/alpha/graders/validate HTTP/1.1\r\nHost: rft\r\n"
              b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"grader\": ")
    started = time.monotonic()
    data = b""
    while True:  # read until the daemon closes the connection
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    elapsed = time.monotonic() - started
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data[:300]
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert BODY_TIMEOUT_S * 0.8 <= elapsed < BODY_TIMEOUT_S * 5, elapsed
    assert shared_guarded_daemon.log().count("stalled") > stalled_before  # this request's line


@pytest.mark.slow
def test_stalled_chunked_upload_is_closed(shared_guarded_daemon: DaemonProcess) -> None:
    """The same for a chunked multipart upload that stops mid-way."""
    files_before = sorted(shared_guarded_daemon.paths.files.glob("*.jsonl"))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(BODY_TIMEOUT_S * 10)
    s.connect(shared_guarded_daemon.socket)
    part = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n"
            b"Content-Type: application/jsonl\r\n\r\n{\"messages\": ")
    s.sendall(b"POST /v1/files HTTP/1.1\r\nHost: rft\r\nContent-Type: multipart/form-data; boundary=b\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(part):x}\r\n".encode() + part + b"\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:300]
    assert sorted(shared_guarded_daemon.paths.files.glob("*.jsonl")) == files_before  # nothing kept of it


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_deeply_nested_json_body_is_a_clear_400(shared_guarded_daemon: DaemonProcess) -> None:
    with _http(shared_guarded_daemon) as h:
        for depth in (100, 100_000, 4_000_000):
            body = '{"grader": ' + '{"type": "string_check", "x": ' + _nested(depth) + "}}"
            resp = h.post("/v1/fine_tuning/alpha/graders/validate", content=body,
                          headers={"content-type": "application/json"})
            assert resp.status_code == 400, resp.text[:300]
            err = resp.json()["error"]
            assert err["code"] == "json_too_deep" and "nested more than 64 levels" in err["message"]
        # ordinary nesting still works
        ok = h.post("/v1/fine_tuning/alpha/graders/validate", json={"grader": EXACT_GRADER})
        assert ok.status_code == 200, ok.text


def test_deeply_nested_jsonl_row_is_a_line_numbered_error(shared_guarded_daemon: DaemonProcess,
                                                           tmp_path: Path) -> None:
    rows = arithmetic_rows(1, 3)
    path = write_jsonl(tmp_path / "deep.jsonl", rows)
    with path.open("a") as f:
        f.write('{"messages": [{"role": "user", "content": "hi"}], "x": ' + _nested(100_000) + "}\n")
    with _http(shared_guarded_daemon) as h:
        report = h.post("/v1/files/validate", json={"path": str(path)})
        assert report.status_code == 200, report.text[:500]
        problems = [p for p in report.json()["problems"] if p["severity"] == "error"]
        assert [(p["line"], p["code"]) for p in problems] == [(4, "too_deep")]
        assert "nested more than" in problems[0]["message"]
        imp = h.post("/v1/files/import", json={"path": str(path)})
        assert imp.status_code == 400 and "line 4" in imp.json()["error"]["message"], imp.text[:500]
        forced = h.post("/v1/files/import", json={"path": str(path), "force": True})
        assert forced.status_code == 200, forced.text[:500]
        page = h.get(f"/v1/files/{forced.json()['id']}/rows", params={"offset": 3, "limit": 1})
        assert page.status_code == 200 and "nested more than" in page.json()["data"][0]["error"]


@pytest.mark.parametrize("route,field", [("/v1/files/import", "path"), ("/v1/files/validate", "path")])
def test_unknown_user_home_is_a_400_naming_the_field(shared_guarded_daemon: DaemonProcess, route: str,
                                                     field: str) -> None:
    with _http(shared_guarded_daemon) as h:
        resp = h.post(route, json={field: "~nosuchuser-rft/x.jsonl"})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["param"] == field and "nosuchuser-rft" in err["message"]


@pytest.mark.parametrize("size_mb", [64, pytest.param(513, marks=pytest.mark.slow)])
def test_big_chunked_multipart_upload_streams_with_flat_memory(guarded_daemon: DaemonProcess, size_mb: int) -> None:
    """A multipart upload far over the JSON limit is allowed and streamed: daemon RSS stays flat."""
    d = guarded_daemon
    baseline = _rss(d.pid)
    peak = baseline
    pad = "y" * 1000

    def body() -> Iterator[bytes]:
        nonlocal peak
        yield (b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
               b"Content-Type: application/jsonl\r\n\r\n")
        for block in range(size_mb):
            rows = "".join(json.dumps({"messages": [{"role": "user", "content": f"{block}.{i} {pad}"}],
                                       "answer": str(i)}) + "\n" for i in range(1000))
            peak = max(peak, _rss(d.pid))
            data = rows.encode()
            yield data + b" " * max(0, MB - len(data) - 1) + b"\n"
        yield b'\r\n--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--b--\r\n'

    with _http(d, timeout=600) as h:
        resp = h.post("/v1/files", content=body(), headers={"content-type": "multipart/form-data; boundary=b"})
    peak = max(peak, _rss(d.pid))
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json()["bytes"] >= size_mb * MB and resp.json()["rows"] == size_mb * 1000
    print(f"{size_mb} MB chunked multipart upload: daemon RSS {baseline / MB:.0f} MB -> peak {peak / MB:.0f} MB")
    assert peak - baseline < 100 * MB, f"daemon RSS grew {(peak - baseline) / MB:.0f} MB"


@pytest.mark.slow
def test_a_connection_that_never_finishes_its_headers_is_closed(shared_guarded_daemon: DaemonProcess) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(BODY_TIMEOUT_S * 10)
    s.connect(shared_guarded_daemon.socket)
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: rft\r\nX-Slow: ")
    started = time.monotonic()
    assert s.recv(65536) == b""  # closed, without an answer
    assert BODY_TIMEOUT_S * 0.8 <= time.monotonic() - started < BODY_TIMEOUT_S * 5
    s.close()
    with _http(shared_guarded_daemon) as h:
        assert h.get("/v1/health").status_code == 200
