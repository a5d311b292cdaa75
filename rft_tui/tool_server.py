"""The tools demo's `add` tool: a tiny HTTP endpoint on 127.0.0.1 that the worker POSTs each call to.

`rft-tui demo --task tools` runs it as its own small process (`python -m rft_tui.tool_server`), so the tool
outlives the TUI when the user quits it mid-run: the process prints `PORT <n>` once it listens on a free
port, reads the job id from stdin, and exits when that job ends (or the daemon has been unreachable for
DAEMON_GONE_S, or stdin closes before a job id arrives). The demo stops it itself when it follows the job
to its end. By hand, `python -m rft_tui.tool_server --port 8765 --forever` serves until Ctrl+C (for
`rft-tui jobs create ... --tools examples/tools-arith/tools.json`). Stdlib only: the CLI and TUI never import torch.

The request is the worker's JSON (docs/agent-rft.md): `{"rollout_id", "call_id", "name", "arguments", "item"}`;
the answer is the exact sum as plain text (`579`), or a 400 with the reason for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

POLL_S = 2.0
DAEMON_GONE_S = 300.0
MAX_BODY = 1 << 20


def add(arguments: Any) -> int:
    """The tool itself: `a + b` for two integers (booleans and floats are refused, like the schema says)."""
    if not isinstance(arguments, dict):
        raise ValueError("arguments must be an object with integers a and b")
    missing = [k for k in ("a", "b") if k not in arguments]
    if missing:
        raise ValueError(f"missing argument(s): {', '.join(missing)}")
    a, b = arguments["a"], arguments["b"]
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (a, b)):
        raise ValueError("a and b must be integers")
    return int(a) + int(b)


class AddHandler(BaseHTTPRequestHandler):
    """POST /add (any path): the sum as text; a bad request body or bad arguments: 400 with the reason."""

    server: AddToolServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            if length > MAX_BODY:
                raise ValueError(f"request body over {MAX_BODY} bytes")
            body = json.loads(self.rfile.read(length) or b"null")
            if not isinstance(body, dict):
                raise ValueError("the request body must be a JSON object")
            result = str(add(body.get("arguments")))
            status = 200
        except ValueError as e:  # JSONDecodeError included
            result, status = str(e), 400
        self.server.count(status == 200)
        data = result.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per call would flood the demo's terminal."""


class AddToolServer(ThreadingHTTPServer):
    """The endpoint on 127.0.0.1 (port 0: a free one), counting the calls it answered."""

    daemon_threads = True
    request_queue_size = 128  # the worker sends up to 32 calls at once: the default backlog of 5 drops some

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), AddHandler)
        self.calls = 0
        self.refused = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/add"

    def count(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.calls += 1
            else:
                self.refused += 1


def job_is_over(socket: str | None, home: str | None, job_id: str) -> bool | None:
    """True when the job is terminal, False while it lives, None when the daemon cannot be asked."""
    from daemon.client import ApiRequestError, Client, DaemonError, Endpoint

    try:
        endpoint = Endpoint.discover(socket=socket) if socket else Endpoint.discover(home=home)
        return Client(endpoint, timeout=10).get_job(job_id).status.is_terminal()
    except ApiRequestError as e:
        return True if e.status_code == 404 else None  # a job the daemon does not know is not ours to serve
    except (DaemonError, OSError):
        return None


def serve_until_job_ends(server: AddToolServer, socket: str | None, home: str | None) -> None:
    """Serve in a thread; read the job id from stdin, then wait for that job to end."""
    threading.Thread(target=server.serve_forever, name="add-tool", daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    job_id = sys.stdin.readline().strip()
    if not job_id:
        return  # the demo did not start a job: nothing to serve
    unreachable_since: float | None = None
    while True:
        over = job_is_over(socket, home, job_id)
        if over:
            return
        if over is None:
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > DAEMON_GONE_S:
                return
        else:
            unreachable_since = None
        time.sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rft_tui.tool_server", description=__doc__.splitlines()[0])
    ap.add_argument("--socket", default=None, help="the daemon's socket (default: the one under --home)")
    ap.add_argument("--home", default=None, help="RFT_HOME of the daemon to ask about the job")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--forever", action="store_true", help="serve until Ctrl+C, not until a job ends")
    args = ap.parse_args(argv)
    try:
        server = AddToolServer(args.port)
    except OSError as e:
        print(f"cannot listen on 127.0.0.1:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        if args.forever:
            print(f"PORT {server.server_address[1]}", flush=True)
            print(f"add tool at {server.url} (Ctrl+C stops it)", file=sys.stderr, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
        else:
            serve_until_job_ends(server, args.socket, args.home)
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
