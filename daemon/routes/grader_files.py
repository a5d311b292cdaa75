"""Grader files: GET/PUT /v1/graders[/{name}], and the watcher that turns edits on disk into stream events.

The watcher uses watchfiles (inotify, no busy polling); it publishes `grader.changed` with the file name
and whether it was added, modified or deleted, so a TUI (local or remote) reloads what `$EDITOR` wrote.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from daemon import api
from daemon.grader_store import GraderStore, is_grader_file_name
from daemon.routes import errors

if TYPE_CHECKING:
    from daemon.context import DaemonContext

log = logging.getLogger("rft.daemon.graders")
router = APIRouter(prefix="/v1/graders")
WATCH_DEBOUNCE_MS = 150
# Declared for the contract; GraderStore.check_name enforces the same rule with a friendlier 400.
_NAME = PathParam(json_schema_extra={"pattern": api.GRADER_FILE_NAME_PATTERN, "maxLength": api.MAX_GRADER_FILE_NAME},
                  description="a file name under $RFT_HOME/graders/ ending in .json, .yaml, .yml or .py")


def _store(request: Request) -> GraderStore:
    from daemon.context import ctx_of

    return GraderStore(ctx_of(request).paths.graders)


@router.get("", response_model=api.ListObject[api.GraderFile])
async def list_grader_files(request: Request) -> api.ListObject[api.GraderFile]:
    data = await run_in_threadpool(_store(request).list)
    return api.ListObject[api.GraderFile](data=data, first_id=data[0].name if data else None,
                                          last_id=data[-1].name if data else None)


@router.get("/{name}", response_model=api.GraderFile, responses=errors(400, 404, 409))
async def get_grader_file(request: Request, name: str = _NAME) -> api.GraderFile:
    return await run_in_threadpool(_store(request).get, name)


@router.put("/{name}", response_model=api.GraderFile, responses=errors(400, 409, 507))
async def save_grader_file(request: Request, body: api.GraderFileSave, name: str = _NAME) -> api.GraderFile:
    return await run_in_threadpool(_store(request).save, name, body)


# ---------------------------------------------------------------------- watching the folder


def _grader_names(folder: Path) -> set[str]:
    try:
        return {e.name for e in os.scandir(folder)
                if is_grader_file_name(e.name) and not e.is_dir(follow_symlinks=False)}
    except FileNotFoundError:
        return set()


def classify_changes(folder: Path, touched: set[str], known: set[str]) -> list[tuple[str, str]]:
    """(name, "added"|"modified"|"deleted") for each touched grader file, judged by what is on disk now.

    Editors and our own atomic saves replace files by rename, which inotify reports as added/deleted
    pairs; comparing with the names we knew gives the user's view of what happened. Updates `known`.
    """
    out: list[tuple[str, str]] = []
    for name in sorted(touched):
        exists = os.path.lexists(folder / name)  # lstat: a symlink or FIFO is listed as a problem, never opened
        if exists:
            out.append((name, "modified" if name in known else "added"))
            known.add(name)
        elif name in known:
            out.append((name, "deleted"))
            known.discard(name)
    return out


async def watch_grader_folder(ctx: DaemonContext, stop: asyncio.Event) -> None:
    """Publish `grader.changed` for every grader file added, modified or deleted until `stop` is set."""
    import watchfiles

    folder = ctx.paths.graders
    folder.mkdir(parents=True, exist_ok=True)
    known = _grader_names(folder)

    def only_graders(_change: Any, path: str) -> bool:
        return is_grader_file_name(os.path.basename(path))

    async for changes in watchfiles.awatch(folder, watch_filter=only_graders, debounce=WATCH_DEBOUNCE_MS,
                                           stop_event=stop, recursive=False):
        touched = {os.path.basename(p) for _c, p in changes}
        for name, change in classify_changes(folder, touched, known):
            ctx.bus.publish(api.StreamEventType.grader_changed, data={"name": name, "change": change})


def start_watchers(ctx: DaemonContext) -> list[asyncio.Task[Any]]:
    """Called by the server's lifespan; the task stops (and its watcher thread with it) when cancelled."""
    stop = asyncio.Event()

    async def run() -> None:
        try:
            await watch_grader_folder(ctx, stop)
        except asyncio.CancelledError:
            stop.set()
            raise
        except Exception:  # a broken watcher must not take the daemon down (logged with its traceback)
            log.exception("grader folder watcher stopped")

    task = asyncio.get_running_loop().create_task(run(), name="grader-folder-watcher")
    task.add_done_callback(lambda _t: stop.set())
    return [task]


__all__ = ["router", "start_watchers", "classify_changes"]
