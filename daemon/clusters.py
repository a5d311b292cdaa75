"""Clusters configured once: `$RFT_HOME/clusters.json` (0600), read and written only by the daemon.

A cluster is a Ray job server or a Slurm login (this machine, or `ssh LOGIN_HOST`) plus the defaults a job on
it starts from, and a `storage` location both sides reach: the job's files go there before it is submitted,
its checkpoints are written there, and export/validation read them from there. A shared path, or (Ray
clusters) an fsspec URL (`s3://...`) with optional `storage_options`: the job's files are uploaded there, the
worker downloads them and publishes its checkpoints there, and export fetches them into a private cache
(see docs/clusters.md, and daemon/checkpoint_storage.py for the credentials).
"""

from __future__ import annotations

import json
import os
import shlex
import threading
import time
from pathlib import Path

from pydantic import ValidationError

from daemon import api, checkpoint_storage
from daemon.errors import ApiError, bad_request, conflict, not_found
from daemon.paths import Paths

CLUSTERS_FILE = "clusters.json"


def is_fsspec_url(storage: str) -> bool:
    return "://" in storage


def check_storage(storage: str, param: str = "storage") -> None:
    """A shared path must be absolute and a directory this daemon can read; a URL must name a known scheme."""
    if is_fsspec_url(storage):
        scheme = storage.split("://", 1)[0]
        if scheme not in api.FSSPEC_SCHEMES:
            raise bad_request(f"storage URL scheme {scheme!r} is not one of {', '.join(api.FSSPEC_SCHEMES)}",
                              param=param, code="invalid_storage")
        return
    try:
        path = Path(storage).expanduser()
    except RuntimeError:  # "~someone" with no such user
        raise bad_request(f"storage {storage!r} names a home directory of a user this machine does not have",
                          param=param, code="invalid_storage") from None
    if not path.is_absolute():
        raise bad_request(f"storage must be an absolute path (shared with the cluster) or an fsspec URL, "
                          f"not {storage!r}", param=param, code="invalid_storage")
    if not path.is_dir():
        raise bad_request(f"storage {storage} is not a directory on this machine; create it (the cluster "
                          "and this daemon must both reach it)", param=param, code="invalid_storage")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise bad_request(f"storage {storage} is not readable and writable by this daemon", param=param,
                          code="invalid_storage")


def check_request(req: api.ClusterCreateRequest) -> None:
    """The kind decides which connection field is required; the other is refused (not silently ignored)."""
    if req.kind == "ray":
        if not req.address:
            raise bad_request("a Ray cluster needs its job server address (address: http://HEAD:8265)",
                              param="address", code="missing_address")
        if req.ssh:
            raise bad_request("ssh is for Slurm login hosts; a Ray cluster is reached at its address",
                              param="ssh", code="invalid_cluster")
    elif req.address:
        raise bad_request("address is for Ray clusters; a Slurm cluster is reached through sbatch "
                          "(optionally over ssh)", param="address", code="invalid_cluster")
    if req.ssh_options is not None:
        if not req.ssh:
            raise bad_request("ssh_options needs ssh (the Slurm login host they are for)", param="ssh_options",
                              code="invalid_cluster")
        try:
            shlex.split(req.ssh_options)
        except ValueError as e:
            raise bad_request(f"ssh_options cannot be split as a shell would: {e}", param="ssh_options",
                              code="invalid_cluster") from None
    check_storage(req.storage)
    if req.storage_options is not None and not is_fsspec_url(req.storage):
        raise bad_request("storage_options apply to a URL storage (s3://...); a shared path needs none",
                          param="storage_options", code="invalid_storage")


class ClusterConfig:
    """The clusters file: whole-file reads and atomic 0600 rewrites, one writer (this daemon) at a time."""

    def __init__(self, paths: Paths) -> None:
        self.path = paths.home / CLUSTERS_FILE
        self._lock = threading.Lock()

    def _read(self) -> dict[str, api.Cluster]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ApiError(500, f"{self.path} is unreadable ({e}); fix or remove it", type="server_error",
                           code="clusters_file_invalid") from None
        out: dict[str, api.Cluster] = {}
        for i, item in enumerate(raw.get("clusters", []) if isinstance(raw, dict) else []):
            try:
                c = api.Cluster.model_validate(item)
            except ValidationError as e:
                raise ApiError(500, f"{self.path}: cluster #{i + 1} is invalid: {e.errors()[0]['msg']}",
                               type="server_error", code="clusters_file_invalid") from None
            out[c.name] = c
        return out

    def _write(self, clusters: dict[str, api.Cluster]) -> None:
        data = {"clusters": [c.model_dump(mode="json", exclude_none=True) for c in clusters.values()]}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def list(self) -> list[api.Cluster]:
        with self._lock:
            return sorted(self._read().values(), key=lambda c: c.name)

    def get(self, name: str, param: str = "name") -> api.Cluster:
        with self._lock:
            cluster = self._read().get(name)
        if cluster is None:
            raise not_found("cluster", name, param=param)
        return cluster

    def find(self, name: str) -> api.Cluster | None:
        with self._lock:
            return self._read().get(name)

    def add(self, req: api.ClusterCreateRequest) -> api.Cluster:
        check_request(req)
        fields = req.model_dump(exclude={"name", "kind", "address", "ssh", "ssh_options", "replace"})
        cluster = api.Cluster(name=req.name, kind=req.kind, address=req.address, ssh=req.ssh,
                              ssh_options=req.ssh_options,
                              defaults=api.ClusterDefaults(**fields), created_at=int(time.time()))
        with self._lock:
            clusters = self._read()
            if req.name in clusters and not req.replace:
                raise conflict(f"A cluster named {req.name!r} exists; remove it first or pass replace",
                               param="name", code="cluster_exists")
            clusters[req.name] = cluster
            self._write(clusters)
        return cluster

    def remove(self, name: str) -> api.Cluster:
        with self._lock:
            clusters = self._read()
            cluster = clusters.pop(name, None)
            if cluster is None:
                raise not_found("cluster", name, param="name")
            self._write(clusters)
        return cluster


def placement(cluster: api.Cluster, req: api.JobCreateRequest, job_id: str) -> api.JobPlacement:
    """Where a job runs: the cluster's defaults, with the request's nodes/GPUs over them."""
    d = cluster.defaults
    storage_dir = str(Path(d.storage).expanduser() / "rft-tui" / "jobs" / job_id)
    if is_fsspec_url(d.storage):
        check_url_storage(cluster)
        storage_dir = checkpoint_storage.join(d.storage, "rft-tui", "jobs", job_id)
    nodes = req.nodes if req.nodes is not None else d.nodes
    gpus = req.gpus_per_node if req.gpus_per_node is not None else d.gpus_per_node
    return api.JobPlacement(name=cluster.name, kind=cluster.kind, nodes=nodes, gpus_per_node=gpus,
                            processes_per_node=gpus if gpus > 0 else d.processes_per_node,
                            storage_dir=storage_dir)


def check_url_storage(cluster: api.Cluster) -> None:
    """A job on URL storage: Ray only (Slurm's script and log need a path both sides reach), and the daemon must
    be able to write there now (the job's files go there before it is submitted)."""
    d = cluster.defaults
    if cluster.kind == "slurm":
        raise bad_request(f"cluster {cluster.name!r} stores to {d.storage}; Slurm jobs need a shared path as "
                          "storage (the batch script and its log live there), URL storage runs on Ray clusters",
                          param="cluster", code="storage_not_supported")
    try:
        checkpoint_storage.probe(d.storage, d.storage_options)
    except checkpoint_storage.StorageError as e:
        raise bad_request(f"cluster {cluster.name!r}: {e}", param="cluster", code="storage_unreachable") from None


def dump_placement(p: api.JobPlacement) -> str:
    return p.model_dump_json(exclude={"engine_id", "engine_state"})

