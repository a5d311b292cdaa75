"""The daemon: a FastAPI app on a Unix socket (0700 dir, peer uid checked), optionally TCP with a token.

`python -m daemon.server --home H [--tcp HOST:PORT]` runs it in the foreground; `rft-tui daemon start`
runs that in the background. It writes `run/daemon.json` owner-only, owns the store and the scheduler,
and fans out live changes on `/v1/stream`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import secrets
import signal
import socket
import sqlite3
import struct
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon import __version__, api
from daemon.bus import EventBus
from daemon.context import DaemonContext
from daemon.datasets.depth import MAX_JSON_DEPTH, deeper_than, depth_message
from daemon.errors import ApiError, disk_full, store_busy
from daemon.paths import Paths, tighten_permissions
from daemon.procs import process_start_time
from daemon.routes.report import JOB_TOKEN_SCOPE
from daemon.scheduler import Scheduler
from daemon.store import (
    Store,
    StoreBusy,
    StoreUnusable,
    check_database_file,
    is_busy_error,
    is_disk_full_error,
    job_of_token,
)

log = logging.getLogger("rft.daemon")

MAX_JSON_BODY = 8 * 1024 * 1024  # JSON bodies; uploads are multipart and streamed
MAX_UPLOAD_BYTES = 8 * 1024**3
BODY_READ_TIMEOUT_S = 30.0  # a body that sends no byte for this long is answered 408 and closed
#: Where a job's reporting token may go (daemon/routes/report.py); any other path needs the owner's token.
REPORT_PATH = re.compile(r"^/v1/fine_tuning/jobs/[^/]+/report/[a-z_]+$")


# ---------------------------------------------------------------------- ASGI guards


def peer_uid(transport_socket: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    try:
        creds = transport_socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class BodyRefused(Exception):
    """The request body broke a limit (size, read timeout, nesting); answered by AccessGuard itself."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class BodyReader:
    """Counts a request body as it streams and times out a stalled one (no byte for `timeout_s`)."""

    def __init__(self, receive: Receive, limit: int, timeout_s: float) -> None:
        self._receive = receive
        self.limit = limit
        self.timeout_s = timeout_s
        self.seen = 0
        self.complete = False
        self.refused: BodyRefused | None = None

    async def receive(self) -> Message:
        if self.refused is not None:
            raise self.refused
        if self.complete:  # after the body: only http.disconnect is left to wait for, however long
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), self.timeout_s)
        except TimeoutError:
            self.refused = BodyRefused(408, f"The request body stalled: no data for {self.timeout_s:g} s.",
                                       "request_timeout")
            raise self.refused from None
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                self.refused = BodyRefused(413, f"Request body is larger than {self.limit} bytes.",
                                           "request_too_large")
                raise self.refused
            self.complete = not message.get("more_body", False)
        return message

    async def read_all(self) -> bytes:
        chunks: list[bytes] = []
        while not self.complete:
            message = await self.receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
        return b"".join(chunks)

    def replay(self, body: bytes) -> Receive:
        """A receive that hands the app the body already read, then waits on the real one."""
        pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Message:
            if pending:
                return pending.pop()
            return await self.receive()

        return receive


class AccessGuard:
    """Refuses TCP requests without the bearer token, and bodies that break the limits.

    Limits hold as the body streams, chunked or not: past MAX_JSON_BODY / MAX_UPLOAD_BYTES the request is
    answered 413 at once (nothing more is read or buffered); a body that stalls for `body_timeout_s` gets a
    408; a JSON body nested deeper than MAX_JSON_DEPTH gets a 400 before anything parses it. Refusals
    close the connection, since the rest of the body is never read.
    """

    def __init__(self, app: ASGIApp, token: str | None, body_timeout_s: float | None = None) -> None:
        self.app = app
        self.token = token
        self.body_timeout_s = body_timeout_s if body_timeout_s is not None else body_read_timeout()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        server = scope.get("server")
        over_unix = server is None or server[1] is None
        headers = dict(scope.get("headers") or [])
        if not over_unix:  # Unix peers were checked (SO_PEERCRED) when they connected
            header = headers.get(b"authorization", b"").decode("latin-1")
            supplied = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
            if not self.token or not hmac.compare_digest(supplied, self.token):
                if job_of_token(supplied) is None:
                    await _deny(send, 401, "A valid bearer token is required over TCP (see run/token).",
                                "authentication_error")
                    return
                if not REPORT_PATH.match(scope.get("path", "")):
                    await _deny(send, 401, "A job's reporting token reaches only that job's "
                                "/v1/fine_tuning/jobs/{id}/report/ endpoints.", "authentication_error",
                                code="job_token_scope")
                    return
                # a job token on a reporting path: the route checks it names this job and matches its hash
                scope = {**scope, JOB_TOKEN_SCOPE: supplied}
        length = headers.get(b"content-length")
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = MAX_UPLOAD_BYTES if multipart else MAX_JSON_BODY
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = True
            if too_big:
                await _deny(send, 413, f"Request body is larger than {limit} bytes.", "invalid_request_error",
                            code="request_too_large", close=True)
                return
        body = BodyReader(receive, limit, self.body_timeout_s)
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if body.refused is not None:
                return  # the app is answering a body it could not read; the refusal is the answer
            started = True
            await send(message)

        try:
            if multipart:  # streamed to the form parser (spooled to disk), counted on the way
                await self.app(scope, body.receive, guarded_send)
            else:  # JSON: at most MAX_JSON_BODY, which the app would buffer anyway; checked before parsing
                data = await body.read_all()
                if len(data) > MAX_JSON_DEPTH and await _too_deep(data):
                    await _deny(send, 400, f"Invalid request body: {depth_message(MAX_JSON_DEPTH)}.",
                                "invalid_request_error", code="json_too_deep")
                    return
                await self.app(scope, body.replay(data), guarded_send)
        except Exception:
            if body.refused is None:
                raise
        if body.refused is not None and not started:
            refused = body.refused
            if refused.status == 408:
                log.warning("closed a connection whose request body stalled for %g s", self.body_timeout_s)
            await _deny(send, refused.status, refused.message, "invalid_request_error", code=refused.code,
                        close=True)


async def _too_deep(data: bytes) -> bool:
    if len(data) < 256 * 1024:
        return deeper_than(data, MAX_JSON_DEPTH)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(deeper_than, data, MAX_JSON_DEPTH)


def body_read_timeout() -> float:
    """Seconds a request body may go without a byte (RFT_BODY_READ_TIMEOUT_S overrides; tests lower it)."""
    try:
        return float(os.environ.get("RFT_BODY_READ_TIMEOUT_S", BODY_READ_TIMEOUT_S))
    except ValueError:
        return BODY_READ_TIMEOUT_S


async def _deny(send: Send, status: int, message: str, type_: str, code: str | None = None,
                close: bool = False) -> None:
    body = json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------- app


def create_app(ctx: DaemonContext) -> FastAPI:
    from daemon.routes import clusters as clusters_routes
    from daemon.routes import files as files_routes
    from daemon.routes import grader_files as grader_files_routes
    from daemon.routes import graders as graders_routes
    from daemon.routes import health, jobs, stream
    from daemon.routes import models as models_routes
    from daemon.routes import preflight as preflight_routes
    from daemon.routes import report as report_routes

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        ctx.bus.bind(loop)
        ctx.scheduler.start(loop)
        notify = _open_notify_socket(ctx, loop)
        ctx.watch_tasks.extend(grader_files_routes.start_watchers(ctx))
        try:
            yield
        finally:
            for task in ctx.watch_tasks:
                task.cancel()
            if notify is not None:
                loop.remove_reader(notify.fileno())
                notify.close()
                with contextlib.suppress(OSError):
                    os.unlink(ctx.paths.notify_socket)
            ctx.scheduler.shutdown()
            graders_routes.shutdown_heavy_pool()

    # no trailing-slash redirects: `PUT /v1/graders/` (an empty name) is a 404, not a 307 to a GET-only route
    app = FastAPI(title="rft-tui daemon", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  redirect_slashes=False)
    app.state.ctx = ctx

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        param, message, more = summarize_validation_errors(exc.errors())
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                       "code": "invalid_request"}}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette's Allow names one route's methods; the contract has all
            from daemon.routes import allowed_methods

            headers["Allow"] = allowed_methods(app, request.url.path)
        return JSONResponse({"error": {"message": str(exc.detail), "type": "invalid_request_error", "param": None,
                                       "code": None}}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse({"error": {"message": f"Internal error: {type(exc).__name__}: {exc}",
                                       "type": "server_error", "param": None, "code": None}}, status_code=500)

    async def _store_fault(request: Request, exc: Exception) -> JSONResponse:
        """One place maps a locked database (503 store_busy) and a full disk (507 disk_full)."""
        if is_busy_error(exc):
            err = store_busy(str(ctx.paths.db), ctx.store.busy_timeout_s)
            return JSONResponse(err.body(), status_code=err.status)
        if is_disk_full_error(exc):
            err = disk_full(str(ctx.paths.home))
            return JSONResponse(err.body(), status_code=err.status)
        return await _unexpected(request, exc)

    for fault in (sqlite3.OperationalError, StoreBusy, OSError):
        app.add_exception_handler(fault, _store_fault)

    for module in (health, files_routes, jobs, graders_routes, grader_files_routes, stream, preflight_routes,
                   models_routes, report_routes, clusters_routes):
        app.include_router(module.router)
    from daemon.routes import contract

    app.openapi = lambda: contract(app)  # type: ignore[method-assign]  # declares what the guards answer too
    return app


def _field_path(loc: Any) -> str | None:
    """`body.method.x.literal['auto']` -> `method.x`: drop the location and pydantic's union-member tags."""
    parts = [str(p) for p in loc or []]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    parts = [p for p in parts if "[" not in p and p not in UNION_TAGS]
    # a tool runtime's union tag (`tools.add.http.url` -> `tools.add.url`); a tool named "http" keeps its name
    parts = [p for i, p in enumerate(parts) if not (p in TOOL_RUNTIME_TAGS and i >= 2 and parts[i - 2] == "tools")]
    return ".".join(parts) or None


TOOL_RUNTIME_TAGS = {"http", "python"}


UNION_TAGS = {"int", "float", "str", "bool", "list", "dict", "none", "function-after", "function-before"}


def summarize_validation_errors(errors: Any) -> tuple[str | None, str, int]:
    """One OpenAI-style (param, message) for the first bad field; union alternatives joined with 'or'."""
    if not errors:
        return None, "Invalid request", 0
    by_field: dict[str | None, list[str]] = {}
    for err in errors:
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            msg = f"Body is not valid JSON: {err.get('ctx', {}).get('error', msg)}"
        elif err.get("type") == "missing":
            msg = "Field required"
        elif err.get("type") == "extra_forbidden":
            msg = "Unknown field"
        loc = tuple(err.get("loc") or ())
        if err.get("type") == api.JSON_TYPE_ERROR:  # raised for the model, about one of its fields
            loc, msg = (*loc, err.get("ctx", {}).get("field", "")), str(err.get("ctx", {}).get("why", msg))
        field = None if err.get("type") == "json_invalid" else _field_path(loc)
        msgs = by_field.setdefault(field, [])
        if msgs and msg.startswith("Input should be ") and msgs[0].startswith("Input should be "):
            msg = msg.removeprefix("Input should be ")
        if msg not in msgs:
            msgs.append(msg)
    param, msgs = next(iter(by_field.items()))
    message = " or ".join(msgs)
    return param, (f"{param}: {message}" if param else message), len(by_field) - 1


def _open_notify_socket(ctx: DaemonContext, loop: asyncio.AbstractEventLoop) -> socket.socket | None:
    """Workers send a datagram (their job id) after each commit; we turn it into stream events."""
    path = ctx.paths.notify_socket
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
    except OSError as e:
        log.warning("notify socket unavailable: %s", e)
        sock.close()
        return None
    os.chmod(path, 0o600)
    sock.setblocking(False)

    def on_readable() -> None:
        seen: set[str] = set()
        while True:
            try:
                data = sock.recv(256)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            seen.add(data.decode("utf-8", "replace"))
        for job_id in seen:
            try:
                ctx.scheduler.on_worker_notify(job_id)
            except Exception:  # a bad poke never takes the daemon down (logged with its traceback)
                log.exception("notify for %s failed", job_id)

    loop.add_reader(sock.fileno(), on_readable)
    return sock


# ---------------------------------------------------------------------- serving


def peer_checked_protocol() -> type:
    """uvicorn's h11 protocol, closing Unix-socket connections from any uid but the daemon's own."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class PeerCheckedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            sock = transport.get_extra_info("socket")
            super().connection_made(transport)  # set up fully, so closing runs the normal clean-up path
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                # uvicorn writes a response's head and body separately: without this, Nagle holds the body
                # for the client's delayed ACK, ~40 ms on every keep-alive request (tests/bench/ingest.py)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if sock is not None and sock.family == socket.AF_UNIX:
                uid = peer_uid(sock)
                if uid is None or uid != os.getuid():
                    log.warning("refused a connection on the Unix socket from uid %s (only uid %s may connect)",
                                uid, os.getuid())
                    transport.close()
                    return
            self._headers_timer = self.loop.call_later(body_read_timeout(), self._headers_timed_out)

        def _headers_timed_out(self) -> None:
            """A connection that never completes its first request's headers is closed (no slowloris)."""
            if self.cycle is None and not self.transport.is_closing():
                log.info("closed a connection that sent no complete request in %g s", body_read_timeout())
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            timer = getattr(self, "_headers_timer", None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

    return PeerCheckedH11Protocol


def write_status_file(paths: Paths, socket_path: str, tcp: str | None) -> None:
    me = os.getpid()
    status = api.DaemonStatusFile(pid=me, socket=socket_path, version=__version__, started_at=int(time.time()),
                                  tcp=tcp, home=str(paths.home), pid_start_time=process_start_time(me))
    tmp = paths.status_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(status.model_dump_json(indent=2))
    os.replace(tmp, paths.status_file)


def load_or_create_token(paths: Paths) -> str:
    try:
        token = paths.token_file.read_text().strip()
        if token:
            os.chmod(paths.token_file, 0o600)
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(paths.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def make_private(paths: Paths) -> None:
    """Tighten a home that other users could read (0700 dirs, 0600/0400 files); say so in one line."""
    with contextlib.suppress(OSError):  # our own CLI creates the log before the daemon runs: not news
        os.chmod(paths.daemon_log, 0o600)
    changed = tighten_permissions(paths.home)
    if changed:
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        log.warning("made %s private (group/other access removed from %d path%s): %s", paths.home,
                    len(changed), "s" if len(changed) != 1 else "", shown)


def open_store(paths: Paths) -> Store:
    """The store, or exit with one line on stderr (no traceback) when rft.db is unusable or locked."""
    try:
        check_database_file(paths.db)
        return Store(paths.db)
    except StoreUnusable as e:
        _refuse_to_start(str(e))
    except sqlite3.DatabaseError as e:
        if is_busy_error(e):
            _refuse_to_start(f"{paths.db} is locked by another process; stop it (or wait) and start again.")
        if is_disk_full_error(e):
            _refuse_to_start(disk_full(str(paths.home)).message)
        _refuse_to_start(f"{paths.db} cannot be opened ({e}); nothing was changed. Move it aside "
                         f"(mv {paths.db} {paths.db}.bad) or restore it from a backup.")
    raise AssertionError("unreachable")


def _refuse_to_start(message: str) -> None:
    print(f"rft-tui daemon: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def workers_url(tcp: str | None) -> str | None:
    """The daemon's URL for workers: `--tcp HOST:PORT`; an empty or wildcard host is this machine's name (a
    cluster node cannot reach 0.0.0.0), an empty one 127.0.0.1 for local workers."""
    if not tcp:
        return None
    host, _, port = tcp.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]"):
        host = socket.getfqdn()
    return f"http://{host or '127.0.0.1'}:{port}"


def serve(home: str | None = None, tcp: str | None = None, log_level: str = "warning") -> None:
    os.umask(0o077)  # everything the daemon and its workers create is owner-only
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # our own records (starts, stops, job transitions, errors) always reach the daemon log; libraries stay quiet
    logging.getLogger("rft").setLevel(min(logging.INFO, logging.getLogger().level))
    paths = Paths.resolve(home).ensure()
    try:
        check_database_file(paths.db)  # first: a refused start says one line and touches nothing
    except StoreUnusable as e:
        _refuse_to_start(str(e))
    make_private(paths)
    store = open_store(paths)
    from daemon.files import sweep_orphans

    removed = sweep_orphans(store, paths)
    if removed:
        log.warning("removed %d half-written or orphaned file(s) from %s: %s", len(removed), paths.files,
                    ", ".join(removed[:5]) + (" ..." if len(removed) > 5 else ""))
    bus = EventBus()
    max_running = int(os.environ.get("RFT_MAX_RUNNING_JOBS", "1"))
    report_url = (os.environ.get("RFT_REPORT_URL_FOR_WORKERS") or workers_url(tcp)) if tcp else None
    scheduler = Scheduler(paths, store, bus, max_running=max_running, report_url=report_url)
    socket_path = str(paths.socket)
    token = load_or_create_token(paths) if tcp else None
    from daemon.clusters import ClusterConfig

    ctx = DaemonContext(paths=paths, store=store, bus=bus, scheduler=scheduler, socket_path=socket_path, tcp=tcp,
                        clusters=ClusterConfig(paths))
    scheduler.cluster_jobs.config = ctx.clusters
    app = create_app(ctx)
    guarded = AccessGuard(app, token=token)

    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    unix_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        unix_sock.bind(socket_path)
    finally:
        os.umask(old_umask)  # 077 (set above): workers inherit it
    os.chmod(socket_path, 0o600)
    unix_sock.listen(128)
    sockets = [unix_sock]
    if tcp:
        host, _, port = tcp.rpartition(":")
        tcp_sock = socket.create_server((host or "127.0.0.1", int(port)), reuse_port=False)
        sockets.append(tcp_sock)

    config = uvicorn.Config(guarded, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2, http=peer_checked_protocol(), ws="none")
    server = uvicorn.Server(config)
    write_status_file(paths, socket_path, tcp)
    app.state.server = server
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then raises the signal again with the handlers it
    # found: ours ends the process through the `finally` below (socket, status file, store), not around it
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_on_signal)
    try:
        server.run(sockets=sockets)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        try:
            status = json.loads(paths.status_file.read_text())
            if status.get("pid") == os.getpid():
                paths.status_file.unlink()
        except (OSError, ValueError):
            pass
        store.close()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m daemon.server", description="Run the rft-tui daemon.")
    parser.add_argument("--home", default=None, help="RFT_HOME (default: $RFT_HOME or ~/.local/share/rft-tui)")
    parser.add_argument("--tcp", default=None, metavar="HOST:PORT", help="also listen on TCP (bearer token)")
    parser.add_argument("--log-level", default=os.environ.get("RFT_LOG_LEVEL", "warning"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    serve(args.home, args.tcp, args.log_level)


if __name__ == "__main__":
    main()
