"""GET /v1/health."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time

from fastapi import APIRouter, Request

from daemon import __version__, api
from daemon.context import ctx_of

router = APIRouter()


HEALTH_STORE_DEADLINE_S = 0.8
# its own thread: health answers even when every request thread waits on a locked store
_probe_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rft-health")


@router.get("/v1/health", response_model=api.Health)
async def health(request: Request) -> api.Health:
    ctx = ctx_of(request)
    store, counts = "busy", None
    try:
        store, counts = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(_probe_thread, ctx.store.probe), HEALTH_STORE_DEADLINE_S)
    except TimeoutError:
        pass  # the probe itself is stuck behind a lock: that is the answer
    counts = counts or {}
    from graders.sandbox_bwrap import sandbox_mode  # probed once per process (bwrap start), off the loop

    sandbox = await asyncio.get_running_loop().run_in_executor(None, sandbox_mode)
    return api.Health(version=__version__, pid=os.getpid(), uptime_s=round(time.time() - ctx.started_at, 3),
                      started_at=int(ctx.started_at), home=str(ctx.paths.home), socket=ctx.socket_path,
                      running_jobs=counts.get("running", 0), queued_jobs=counts.get("queued", 0),
                      store=store, sandbox=sandbox)  # type: ignore[arg-type]


@router.post("/v1/shutdown")
async def shutdown(request: Request) -> dict[str, bool]:
    """Ask the daemon to exit (running workers keep running and are re-adopted on the next start)."""
    server = getattr(request.app.state, "server", None)
    if server is not None:
        server.should_exit = True
    return {"ok": True}
