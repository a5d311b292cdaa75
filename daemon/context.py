"""What every route needs from the daemon, in a module of its own so routes never import the server.

`daemon.server` builds one `DaemonContext`, puts it on `app.state.ctx` and imports the routes; routes read
it through `ctx_of(request)`. The import graph runs one way: server -> routes -> context.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

if TYPE_CHECKING:
    from daemon.bus import EventBus
    from daemon.clusters import ClusterConfig
    from daemon.paths import Paths
    from daemon.scheduler import Scheduler
    from daemon.store import Store


@dataclass
class DaemonContext:
    """Everything a route needs; one per daemon, on `app.state.ctx`."""

    paths: Paths
    store: Store
    bus: EventBus
    scheduler: Scheduler
    started_at: float = field(default_factory=time.time)
    socket_path: str | None = None
    tcp: str | None = None  # HOST:PORT when the daemon also listens on TCP (cluster workers report there)
    clusters: ClusterConfig | None = None
    watch_tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def ctx_of(request: Request) -> DaemonContext:
    """The daemon's context for this request."""
    ctx: DaemonContext = request.app.state.ctx
    return ctx
