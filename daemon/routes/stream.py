"""GET /v1/stream: server-sent events for job status changes, new metric steps, file/grader changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from daemon import api
from daemon.context import ctx_of
from daemon.routes import media

router = APIRouter()
HEARTBEAT_S = 15.0


@router.get("/v1/stream", response_class=StreamingResponse, responses=media(
    "text/event-stream", "Server-sent events: `event: <StreamEvent.type>` and `data: <StreamEvent JSON>` per change, "
    "a comment line first and heartbeats every 15 s (daemon.api.StreamEvent)"))
async def stream(request: Request, job_id: str | None = None) -> StreamingResponse:
    ctx = ctx_of(request)
    queue = ctx.bus.subscribe()

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=HEARTBEAT_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    event = api.StreamEvent(type=api.StreamEventType.heartbeat, created_at=0)
                if job_id and event.job_id not in (None, job_id):
                    continue
                yield f"event: {event.type.value}\ndata: {event.model_dump_json(exclude_none=True)}\n\n".encode()
        finally:
            ctx.bus.unsubscribe(queue)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
