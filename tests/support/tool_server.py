"""A real local HTTP tool server for agent-RFT tests: counts calls, injects 500s, timeouts, malformed JSON.

Routes (POST, the worker's body `{"rollout_id", "call_id", "name", "arguments", "item"}`):
  /add          {"a", "b"} -> {"sum": a + b}
  /text         -> plain text "pong <name>"
  /text-sum     {"a", "b"} -> the sum as plain text
  /flaky        the first `fail_first` calls answer 500, then like /add
  /always500    always 500
  /slow         answers after `delay_s` (longer than the client's timeout in the timeout tests)
  /badjson      content-type application/json with a body that is not JSON
  /grade        an endpoint grader: {"reward": 1.0 if sample.output_text == item.answer else 0.0, "calls": n},
                plus 0.5 credit for a sample whose tool_calls include a successful add
  /flakygrade   like /flaky, answering {"reward": 1.0}
  /number       an endpoint grader answering a bare number: 0.25
  /outofrange   an endpoint grader answering 1.5
  /barrier      answers only once `parties` requests are in flight together (proves calls run concurrently),
                else 500 after `barrier_timeout_s`
Every request body is recorded (`requests`), per path, and its headers with the full path and query (`seen`).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ToolServer:
    """Start with `with ToolServer() as srv:`; `srv.url("/add")` is where a job's tool points."""

    def __init__(self, fail_first: int = 2, delay_s: float = 3.0, parties: int = 3,
                 barrier_timeout_s: float = 10.0) -> None:
        self.fail_first = fail_first
        self.barrier = threading.Barrier(parties)
        self.barrier_timeout_s = barrier_timeout_s
        self.delay_s = delay_s
        self.calls: Counter[str] = Counter()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.seen: list[tuple[str, dict[str, str]]] = []  # (path with query, headers) of every request
        self.lock = threading.Lock()
        self.release = threading.Event()  # set on stop: slow answers end at once
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                path = self.path.split("?")[0]
                with server.lock:
                    server.calls[path] += 1
                    n = server.calls[path]
                    server.requests.append((path, body))
                    server.seen.append((self.path, dict(self.headers.items())))
                server.answer(self, path, n, body)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def answer(self, h: BaseHTTPRequestHandler, path: str, n: int, body: dict[str, Any]) -> None:
        args = body.get("arguments") or {}
        if path == "/text-sum":  # plain text, as builtin:tiny-tools reads a result
            return _send(h, 200, str(int(args.get("a", 0)) + int(args.get("b", 0))).encode(), "text/plain")
        if path == "/text":
            return _send(h, 200, f"pong {body.get('name')}".encode(), "text/plain")
        if path == "/always500" or (path in ("/flaky", "/flakygrade") and n <= self.fail_first):
            return _send(h, 500, b"injected failure", "text/plain")
        if path == "/slow":
            self.release.wait(self.delay_s)
            return _send(h, 200, b'{"late": true}', "application/json")
        if path == "/grade":
            sample, item = body.get("sample") or {}, body.get("item") or {}
            reward = 1.0 if sample.get("output_text") == item.get("answer") else 0.0
            if reward == 0.0 and any(c.get("name") == "add" and c.get("error") is None
                                     for c in sample.get("tool_calls") or []):
                reward = 0.5
            return _send(h, 200, json.dumps({"reward": reward, "calls": n}).encode(), "application/json")
        if path == "/flakygrade":
            return _send(h, 200, b'{"reward": 1.0}', "application/json")
        if path == "/number":
            return _send(h, 200, b"0.25", "application/json")
        if path == "/outofrange":
            return _send(h, 200, b'{"reward": 1.5}', "application/json")
        if path == "/barrier":
            try:
                self.barrier.wait(self.barrier_timeout_s)
            except threading.BrokenBarrierError:
                return _send(h, 500, b"calls did not arrive together", "text/plain")
            return _send(h, 200, json.dumps({"together": True, "call_id": body.get("call_id")}).encode(),
                         "application/json")
        if path == "/badjson":
            return _send(h, 200, b'{"sum": 3,,', "application/json")
        if path in ("/add", "/flaky"):
            return _send(h, 200, json.dumps({"sum": args.get("a", 0) + args.get("b", 0)}).encode(),
                         "application/json")
        return _send(h, 404, b"no such tool", "text/plain")

    def __enter__(self) -> ToolServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the worker sends up to 32 calls at once: a backlog of 5 drops some


def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str) -> None:
    h.send_response(status)
    h.send_header("content-type", ctype)
    h.send_header("content-length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)
