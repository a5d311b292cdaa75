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
import secrets
import signal
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from daemon import __version__, api
from daemon.bus import EventBus
from daemon.errors import ApiError
from daemon.paths import Paths
from daemon.scheduler import Scheduler, process_start_time
from daemon.store import Store

log = logging.getLogger("rft.daemon")

MAX_JSON_BODY = 8 * 1024 * 1024  # JSON bodies; uploads are multipart and streamed
MAX_UPLOAD_BYTES = 8 * 1024**3


@dataclass
class DaemonContext:
    """Everything a route needs; one per daemon, on `app.state.ctx`."""

    paths: Paths
    store: Store
    bus: EventBus
    scheduler: Scheduler
    started_at: float = field(default_factory=time.time)
    socket_path: str | None = None
    watch_tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def ctx_of(request: Request) -> DaemonContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


# ---------------------------------------------------------------------- ASGI guards


def peer_uid(transport_socket: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    try:
        creds = transport_socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class AccessGuard:
    """Refuses TCP requests without the bearer token, and bodies over the size limits."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

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
                await _deny(send, 401, "A valid bearer token is required over TCP (see run/token).",
                            "authentication_error")
                return
        length = headers.get(b"content-length")
        ctype = headers.get(b"content-type", b"")
        limit = MAX_UPLOAD_BYTES if ctype.startswith(b"multipart/") else MAX_JSON_BODY
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = True
            if too_big:
                await _deny(send, 413, f"Request body is larger than {limit} bytes.", "invalid_request_error")
                return
        await self.app(scope, receive, send)


async def _deny(send: Send, status: int, message: str, type_: str) -> None:
    body = json.dumps({"error": {"message": message, "type": type_, "param": None, "code": None}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------- app


def create_app(ctx: DaemonContext) -> FastAPI:
    from daemon.routes import files as files_routes
    from daemon.routes import grader_files as grader_files_routes
    from daemon.routes import graders as graders_routes
    from daemon.routes import health, jobs, stream
    from daemon.routes import preflight as preflight_routes

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

    app = FastAPI(title="rft-tui daemon", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
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
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": {"message": str(exc.detail), "type": "invalid_request_error", "param": None,
                                       "code": None}}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse({"error": {"message": f"Internal error: {type(exc).__name__}: {exc}",
                                       "type": "server_error", "param": None, "code": None}}, status_code=500)

    for module in (health, files_routes, jobs, graders_routes, grader_files_routes, stream, preflight_routes):
        app.include_router(module.router)
    return app


def _field_path(loc: Any) -> str | None:
    """`body.method.x.literal['auto']` -> `method.x`: drop the location and pydantic's union-member tags."""
    parts = [str(p) for p in loc or []]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    parts = [p for p in parts if "[" not in p and p not in UNION_TAGS]
    return ".".join(parts) or None


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
        field = None if err.get("type") == "json_invalid" else _field_path(err.get("loc"))
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
            except Exception:  # noqa: BLE001 - a bad poke never takes the daemon down
                log.exception("notify for %s failed", job_id)

    loop.add_reader(sock.fileno(), on_readable)
    return sock


# ---------------------------------------------------------------------- serving


def peer_checked_protocol() -> type:
    """uvicorn's h11 protocol, closing Unix-socket connections from any uid but the daemon's own."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class PeerCheckedH11Protocol(H11Protocol):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family == socket.AF_UNIX:
                uid = peer_uid(sock)
                if uid is None or uid != os.getuid():
                    log.warning("refusing a connection from uid %s", uid)
                    transport.close()
                    return
            super().connection_made(transport)

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


def sweep_partial_imports(paths: Paths) -> int:
    """Remove temp files of imports that a killed daemon left half-written (they never became files)."""
    removed = 0
    for tmp in paths.files.glob(".import-*"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


def serve(home: str | None = None, tcp: str | None = None, log_level: str = "warning") -> None:
    paths = Paths.resolve(home).ensure()
    sweep_partial_imports(paths)
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # our own records (starts, stops, job transitions, errors) always reach the daemon log; libraries stay quiet
    logging.getLogger("rft").setLevel(min(logging.INFO, logging.getLogger().level))
    store = Store(paths.db)
    bus = EventBus()
    max_running = int(os.environ.get("RFT_MAX_RUNNING_JOBS", "1"))
    scheduler = Scheduler(paths, store, bus, max_running=max_running)
    socket_path = str(paths.socket)
    token = load_or_create_token(paths) if tcp else None
    ctx = DaemonContext(paths=paths, store=store, bus=bus, scheduler=scheduler, socket_path=socket_path)
    app = create_app(ctx)
    guarded = AccessGuard(app, token=token)

    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    unix_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        unix_sock.bind(socket_path)
    finally:
        os.umask(old_umask)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m daemon.server", description="Run the rft-tui daemon.")
    parser.add_argument("--home", default=None, help="RFT_HOME (default: $RFT_HOME or ~/.local/share/rft-tui)")
    parser.add_argument("--tcp", default=None, metavar="HOST:PORT", help="also listen on TCP (bearer token)")
    parser.add_argument("--log-level", default=os.environ.get("RFT_LOG_LEVEL", "warning"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    serve(args.home, args.tcp, args.log_level)


if __name__ == "__main__":
    sys.exit(main())
