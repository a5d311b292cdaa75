"""Clusters (extension): `/v1/clusters` -- configure Ray/Slurm clusters once, test them, remove them."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from daemon import api
from daemon.checkpoint_storage import StorageError, is_url, probe
from daemon.clusters import ClusterConfig
from daemon.context import ctx_of
from daemon.errors import ApiError
from daemon.executors import executor_for
from daemon.routes import errors

router = APIRouter(prefix="/v1/clusters")
TEST_TIMEOUT_S = 120.0


def _config(request: Request) -> ClusterConfig:
    config = ctx_of(request).clusters
    if config is None:  # every daemon built by serve() has one; a bare test app may not
        raise ApiError(503, "this daemon has no cluster configuration", type="server_error",
                       code="clusters_unavailable")
    return config


@router.get("", response_model=api.ListObject[api.Cluster], responses=errors(500, 503))
def list_clusters(request: Request) -> api.ListObject[api.Cluster]:
    data = [c.redacted() for c in _config(request).list()]
    return api.ListObject[api.Cluster](data=data, first_id=data[0].name if data else None,
                                       last_id=data[-1].name if data else None)


@router.post("", response_model=api.Cluster, responses=errors(400, 409, 500, 503))
def add_cluster(request: Request, body: api.ClusterCreateRequest) -> api.Cluster:
    return _config(request).add(body).redacted()


@router.get("/{name}", response_model=api.Cluster, responses=errors(404, 500, 503))
def get_cluster(request: Request, name: str) -> api.Cluster:
    return _config(request).get(name).redacted()


@router.delete("/{name}", response_model=api.Cluster, responses=errors(404, 409, 500, 503))
def remove_cluster(request: Request, name: str) -> api.Cluster:
    ctx = ctx_of(request)
    busy = [r["id"] for r in ctx.store.query(
        "SELECT id FROM jobs WHERE cluster = ? AND status IN ('queued', 'running', 'paused')", [name])]
    if busy:
        from daemon.errors import conflict

        raise conflict(f"Cluster {name!r} still has job(s) {', '.join(busy[:5])}; cancel them or let them finish",
                       param="name", code="cluster_in_use")
    return _config(request).remove(name).redacted()


@router.post("/{name}/test", response_model=api.ClusterTestResult, responses=errors(404, 500, 503))
async def test_cluster(request: Request, name: str,
                       timeout_s: float = Query(60.0, gt=0, le=TEST_TIMEOUT_S,
                                                description="how long to wait for the test job")
                       ) -> api.ClusterTestResult:
    """Submit a trivial job and wait for it: `ok`, the engine's id, the round trip in seconds.

    A URL storage is probed first (write, read back, delete): a cluster whose storage the daemon cannot use
    fails the test with the URL and the step that failed, before anything is submitted.
    """
    cluster = _config(request).get(name)
    storage_s = None
    if is_url(cluster.defaults.storage):
        started = time.monotonic()
        try:
            await run_in_threadpool(probe, cluster.defaults.storage, cluster.defaults.storage_options)
        except StorageError as e:
            return api.ClusterTestResult(name=name, ok=False, round_trip_s=round(time.monotonic() - started, 3),
                                         state="storage_unreachable", detail=str(e))
        storage_s = round(time.monotonic() - started, 3)
    result = await run_in_threadpool(lambda: executor_for(cluster).test(timeout_s))
    result.storage_round_trip_s = storage_s
    return result
