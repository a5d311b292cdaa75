"""In-process fan-out of stream events to `/v1/stream` subscribers (bounded queues, never blocks)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from daemon import api


class EventBus:
    """Each subscriber gets its own bounded queue; a slow one drops its oldest events, never the daemon."""

    def __init__(self, maxsize: int = 1000) -> None:
        self._subscribers: set[asyncio.Queue[api.StreamEvent]] = set()
        self._maxsize = maxsize
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def subscribe(self) -> asyncio.Queue[api.StreamEvent]:
        q: asyncio.Queue[api.StreamEvent] = asyncio.Queue(self._maxsize)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[api.StreamEvent]) -> None:
        self._subscribers.discard(q)

    def publish(self, type: api.StreamEventType, **fields: Any) -> None:
        """Thread-safe: may be called from request threads or the event loop."""
        event = api.StreamEvent(type=type, created_at=time.time(), **fields)
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(event)
        else:
            loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: api.StreamEvent) -> None:
        for q in list(self._subscribers):
            if q.full():
                try:
                    q.get_nowait()
                except asyncio.QueueEmpty:
                    pass
            q.put_nowait(event)
