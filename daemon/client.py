"""Clients of the daemon API (sync and async, over the Unix socket or TCP) and daemon discovery.

Discovery reads `run/daemon.json`, checks the pid is alive (and is the process that wrote it), cleans
up a stale file and raises typed errors. No torch, no SQLite: the TUI and CLI only talk HTTP.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Concatenate, Generic, ParamSpec, TypeVar, overload

import httpx
from pydantic import BaseModel

from daemon import api
from daemon.paths import Paths
from daemon.procs import pid_alive

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
P = ParamSpec("P")
DEFAULT_TIMEOUT = 60.0


class DaemonError(Exception):
    """Base of every client-side error."""


class DaemonNotRunning(DaemonError):
    """No daemon answers for this RFT_HOME (no status file, or nothing listening)."""


class StaleDaemonStatus(DaemonNotRunning):
    """`daemon.json` names a pid that is gone (or reused); the file has been removed."""


class ApiRequestError(DaemonError):
    """The daemon answered with an OpenAI-style error."""

    def __init__(self, status_code: int, error: api.ErrorDetail) -> None:
        super().__init__(error.message)
        self.status_code = status_code
        self.error = error

    @property
    def param(self) -> str | None:
        return self.error.param


def read_status(paths: Paths, clean_stale: bool = True) -> api.DaemonStatusFile:
    """The running daemon's status; DaemonNotRunning / StaleDaemonStatus otherwise."""
    try:
        raw = paths.status_file.read_text()
    except FileNotFoundError:
        raise DaemonNotRunning(f"No daemon is running for {paths.home} (start one: rft-tui daemon start)") from None
    try:
        status = api.DaemonStatusFile.model_validate_json(raw)
    except ValueError:
        if clean_stale:
            paths.status_file.unlink(missing_ok=True)
        raise StaleDaemonStatus(f"{paths.status_file} was unreadable and has been removed") from None
    if not pid_alive(status.pid, status.pid_start_time):
        if clean_stale:
            paths.status_file.unlink(missing_ok=True)
            Path(status.socket).unlink(missing_ok=True)
        raise StaleDaemonStatus(f"The daemon (pid {status.pid}) recorded in {paths.status_file} is gone; "
                                "the stale status was removed")
    return status


@dataclass(frozen=True)
class Endpoint:
    """Where a daemon listens: a Unix socket, or a TCP base URL with its bearer token."""

    socket: str | None = None
    base_url: str | None = None
    token: str | None = None

    @classmethod
    def discover(cls, home: str | os.PathLike[str] | None = None, socket: str | None = None,
                 url: str | None = None, token: str | None = None) -> Endpoint:
        if url:
            return cls(base_url=url.rstrip("/"), token=token or os.environ.get("RFT_TOKEN"))
        if socket:
            return cls(socket=str(socket))
        status = read_status(Paths.resolve(home))
        return cls(socket=status.socket)

    def transport_kwargs(self, asynchronous: bool) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if self.socket:
            transport = (httpx.AsyncHTTPTransport(uds=self.socket) if asynchronous
                         else httpx.HTTPTransport(uds=self.socket))
            return {"transport": transport, "base_url": "http://rft-daemon", "headers": headers}
        return {"base_url": self.base_url, "headers": headers}


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        err = api.ErrorResponse.model_validate(resp.json()).error
    except (ValueError, TypeError):
        err = api.ErrorDetail(message=resp.text[:500] or f"HTTP {resp.status_code}", type="server_error")
    raise ApiRequestError(resp.status_code, err)


def _payload(body: BaseModel | dict[str, Any] | None) -> Any:
    if isinstance(body, BaseModel):
        return body.model_dump(mode="json", exclude_none=True)
    return body


@dataclass(frozen=True)
class _Request(Generic[T]):
    """One API call as data: what to send and how to read the answer into `T`.

    Each endpoint is written once as a `_Request`; `Client` sends it and returns `T`, `AsyncClient` awaits it.
    """

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    json: BaseModel | dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)  # httpx request options: params, timeout, files, data


def _request(method: str, path: str, model: type[M], json: BaseModel | dict[str, Any] | None = None,
             **options: Any) -> _Request[M]:
    """A call whose answer is one API model."""
    return _Request(method, path, _reader(model), json, options)


class _Endpoint(Generic[P, T]):
    """An API method written once: on a `Client` it returns `T`, on an `AsyncClient` an awaitable of `T`.

    (A descriptor, because a base class cannot declare "sync in one subclass, async in the other" to mypy.)
    """

    def __init__(self, build: Callable[Concatenate[Any, P], _Request[T]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> _Endpoint[P, T]: ...

    @overload
    def __get__(self, obj: Client, owner: type[Any]) -> Callable[P, T]: ...

    @overload
    def __get__(self, obj: AsyncClient, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, obj: Client | AsyncClient | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        build = self._build

        @functools.wraps(build)
        def call(*args: P.args, **kwargs: P.kwargs) -> Any:
            return obj._send(build(obj, *args, **kwargs))

        return call


class _Api:
    """Every endpoint once, as the `_Request` it sends (see `_Endpoint`)."""

    # health / daemon
    @_Endpoint
    def health(self) -> _Request[api.Health]:
        return _request("GET", "/v1/health", api.Health)

    @_Endpoint
    def shutdown(self) -> _Request[dict[str, Any]]:
        return _Request("POST", "/v1/shutdown", _json_object)

    # files
    @_Endpoint
    def list_files(self, after: str | None = None, limit: int = 100) -> _Request[api.ListObject[api.FileObject]]:
        return _request("GET", "/v1/files", api.ListObject[api.FileObject], params=_params(after=after, limit=limit))

    @_Endpoint
    def find_file(self, sha256: str) -> _Request[api.FileObject | None]:
        """The stored file with this content hash, or None (`GET /v1/files?sha256=`)."""
        page = _reader(api.ListObject[api.FileObject])
        return _Request("GET", "/v1/files", lambda resp: _same_content(page(resp).data, sha256),
                        options={"params": {"sha256": sha256, "limit": 1}})

    @_Endpoint
    def get_file(self, file_id: str) -> _Request[api.FileObject]:
        return _request("GET", f"/v1/files/{file_id}", api.FileObject)

    @_Endpoint
    def import_file(self, path: str, purpose: api.FilePurposeName = "fine-tune",
                    force: bool = False) -> _Request[api.FileObject]:
        return _request("POST", "/v1/files/import", api.FileObject,
                        json=api.FileImportRequest(path=str(Path(path).expanduser().resolve()), purpose=purpose,
                                                   force=force))

    @_Endpoint
    def file_rows(self, file_id: str, offset: int = 0, limit: int = 50) -> _Request[api.FileRowsPage]:
        return _request("GET", f"/v1/files/{file_id}/rows", api.FileRowsPage,
                        params={"offset": offset, "limit": limit})

    @_Endpoint
    def validate_file(self, request: api.FileValidateRequest | dict[str, Any]) -> _Request[api.ValidationReport]:
        return _request("POST", "/v1/files/validate", api.ValidationReport, json=request)

    # jobs
    @_Endpoint
    def create_job(self, request: api.JobCreateRequest | dict[str, Any]) -> _Request[api.FineTuningJob]:
        return _request("POST", "/v1/fine_tuning/jobs", api.FineTuningJob, json=request)

    @_Endpoint
    def list_models(self) -> _Request[api.ListObject[api.LocalModel]]:
        return _request("GET", "/v1/models", api.ListObject[api.LocalModel], timeout=None)

    @_Endpoint
    def doctor(self) -> _Request[api.DoctorReport]:
        return _request("GET", "/v1/doctor", api.DoctorReport, timeout=None)

    @_Endpoint
    def check_model(self, model: str) -> _Request[api.ModelCheck]:
        return _request("POST", "/v1/models/check", api.ModelCheck, json=api.ModelCheckRequest(model=model))

    @_Endpoint
    def preflight(self, request: api.PreflightRequest | dict[str, Any]) -> _Request[api.PreflightReport]:
        return _request("POST", "/v1/fine_tuning/preflight", api.PreflightReport, json=request, timeout=None)

    @_Endpoint
    def export_job(self, job_id: str,
                   request: api.JobExportRequest | dict[str, Any]) -> _Request[api.JobExportResult]:
        return _request("POST", f"/v1/fine_tuning/jobs/{job_id}/export", api.JobExportResult, json=request,
                        timeout=None)

    @_Endpoint
    def list_jobs(self, after: str | None = None, limit: int = 20,
                  status: str | None = None) -> _Request[api.ListObject[api.FineTuningJob]]:
        return _request("GET", "/v1/fine_tuning/jobs", api.ListObject[api.FineTuningJob],
                        params=_params(after=after, limit=limit, status=status))

    @_Endpoint
    def get_job(self, job_id: str) -> _Request[api.FineTuningJob]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}", api.FineTuningJob)

    @_Endpoint
    def cancel_job(self, job_id: str) -> _Request[api.FineTuningJob]:
        return _request("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel", api.FineTuningJob)

    @_Endpoint
    def pause_job(self, job_id: str) -> _Request[api.FineTuningJob]:
        return _request("POST", f"/v1/fine_tuning/jobs/{job_id}/pause", api.FineTuningJob)

    @_Endpoint
    def resume_job(self, job_id: str) -> _Request[api.FineTuningJob]:
        return _request("POST", f"/v1/fine_tuning/jobs/{job_id}/resume", api.FineTuningJob)

    @_Endpoint
    def list_events(self, job_id: str, after: str | None = None, limit: int = 20,
                    order: str = "desc") -> _Request[api.ListObject[api.JobEvent]]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/events", api.ListObject[api.JobEvent],
                        params=_params(after=after, limit=limit, order=order))

    @_Endpoint
    def list_checkpoints(self, job_id: str, limit: int = 100) -> _Request[api.ListObject[api.JobCheckpoint]]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/checkpoints", api.ListObject[api.JobCheckpoint],
                        params={"limit": limit})

    @_Endpoint
    def metrics(self, job_id: str, after_step: int | None = None,
                limit: int = 10_000) -> _Request[api.MetricsPage]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/metrics", api.MetricsPage,
                        params=_params(after_step=after_step, limit=limit))

    @_Endpoint
    def validation(self, job_id: str, step: int | None = None,
                   rescoring: str | None = None) -> _Request[api.ValidationPage]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/validation", api.ValidationPage,
                        params=_params(step=step, rescoring=rescoring))

    @_Endpoint
    def validation_compare(self, job_id: str, step: int | None = None, base_step: int = 0,
                           rescoring: str | None = None) -> _Request[api.ValidationCompare]:
        """Base vs checkpoint over paired validation rows: mean difference, 95 % bootstrap CI, sign-test p."""
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/validation/compare", api.ValidationCompare,
                        params=_params(base_step=base_step, step=step, rescoring=rescoring))

    @_Endpoint
    def rescore(self, job_id: str, request: api.RescoreRequest | dict[str, Any]) -> _Request[api.Rescoring]:
        """Grade the job's stored outputs again with another grader (kept as a named re-scoring)."""
        return _request("POST", f"/v1/fine_tuning/jobs/{job_id}/rescore", api.Rescoring, json=request, timeout=None)

    @_Endpoint
    def list_rescorings(self, job_id: str) -> _Request[api.ListObject[api.Rescoring]]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/rescore", api.ListObject[api.Rescoring])

    @_Endpoint
    def samples(self, job_id: str, after_step: int | None = None, limit: int = 100) -> _Request[api.SamplesPage]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/samples", api.SamplesPage,
                        params=_params(after_step=after_step, limit=limit))

    @_Endpoint
    def list_alarms(self, job_id: str) -> _Request[api.ListObject[api.JobAlarm]]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/alarms", api.ListObject[api.JobAlarm])

    @_Endpoint
    def job_log(self, job_id: str, lines: int = 200) -> _Request[api.JobLog]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/log", api.JobLog, params={"lines": lines})

    # reporting (a worker with its job token; daemon/worker/http_reporter.py)
    @_Endpoint
    def report_records(self, job_id: str, batch: api.ReportBatch) -> _Request[api.ReportAck]:
        """Append a worker's records to its job (idempotent by record id and by step)."""
        return _request("POST", f"/v1/fine_tuning/jobs/{job_id}/report/records", api.ReportAck, json=batch)

    @_Endpoint
    def report_state(self, job_id: str) -> _Request[api.ReportJobState]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/report/state", api.ReportJobState)

    @_Endpoint
    def report_spec(self, job_id: str) -> _Request[api.JobSnapshot]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/report/spec", api.JobSnapshot)

    @_Endpoint
    def report_checkpoints_to_delete(self, job_id: str) -> _Request[api.ListObject[api.JobCheckpoint]]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/report/checkpoints_to_delete",
                        api.ListObject[api.JobCheckpoint])
    @_Endpoint
    def job_script(self, job_id: str) -> _Request[api.JobScript]:
        return _request("GET", f"/v1/fine_tuning/jobs/{job_id}/script", api.JobScript)

    # clusters
    @_Endpoint
    def list_clusters(self) -> _Request[api.ListObject[api.Cluster]]:
        return _request("GET", "/v1/clusters", api.ListObject[api.Cluster])

    @_Endpoint
    def get_cluster(self, name: str) -> _Request[api.Cluster]:
        return _request("GET", f"/v1/clusters/{name}", api.Cluster)

    @_Endpoint
    def add_cluster(self, request: api.ClusterCreateRequest | dict[str, Any]) -> _Request[api.Cluster]:
        return _request("POST", "/v1/clusters", api.Cluster, json=request)

    @_Endpoint
    def remove_cluster(self, name: str) -> _Request[api.Cluster]:
        return _request("DELETE", f"/v1/clusters/{name}", api.Cluster)

    @_Endpoint
    def test_cluster(self, name: str, timeout_s: float = 60.0) -> _Request[api.ClusterTestResult]:
        return _request("POST", f"/v1/clusters/{name}/test", api.ClusterTestResult,
                        params={"timeout_s": timeout_s}, timeout=timeout_s + 30)

    # graders
    @_Endpoint
    def run_grader(self, grader: dict[str, Any], model_sample: str,
                   item: dict[str, Any] | None = None) -> _Request[api.GraderRunResponse]:
        return _request("POST", "/v1/fine_tuning/alpha/graders/run", api.GraderRunResponse,
                        json=api.GraderRunRequest(grader=grader, model_sample=model_sample, item=item))

    @_Endpoint
    def validate_grader(self, grader: dict[str, Any]) -> _Request[api.GraderValidateResponse]:
        return _request("POST", "/v1/fine_tuning/alpha/graders/validate", api.GraderValidateResponse,
                        json=api.GraderValidateRequest(grader=grader))

    @_Endpoint
    def test_grader(self, grader: dict[str, Any], file_id: str, field: str | None = None,
                    limit: int = 1000) -> _Request[api.GraderTestReport]:
        return _request("POST", "/v1/fine_tuning/alpha/graders/test", api.GraderTestReport,
                        json=api.GraderTestRequest(grader=grader, file_id=file_id, field=field, limit=limit),
                        timeout=None)

    @_Endpoint
    def list_grader_files(self) -> _Request[api.ListObject[api.GraderFile]]:
        return _request("GET", "/v1/graders", api.ListObject[api.GraderFile])

    @_Endpoint
    def get_grader_file(self, name: str) -> _Request[api.GraderFile]:
        return _request("GET", f"/v1/graders/{name}", api.GraderFile)

    @_Endpoint
    def save_grader_file(self, name: str, content: str,
                         expected_modified_at: float | None = None) -> _Request[api.GraderFile]:
        return _request("PUT", f"/v1/graders/{name}", api.GraderFile,
                        json=api.GraderFileSave(content=content, expected_modified_at=expected_modified_at))


def _same_content(files: list[api.FileObject], sha256: str) -> api.FileObject | None:
    """The file whose hash matches (a daemon that ignores the `sha256` filter returns others)."""
    return next((f for f in files if f.sha256 == sha256), None)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The content hash the daemon files a dataset under (so a stored file is never sent twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _transport_error(endpoint: Endpoint, method: str, path: str, e: Exception) -> DaemonError:
    """A request that got no HTTP answer, as the typed error a caller can print in one line."""
    if isinstance(e, (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError)):
        return DaemonNotRunning(f"Cannot reach the daemon at {endpoint.socket or endpoint.base_url}: {e}")
    if isinstance(e, httpx.TimeoutException):
        return DaemonError(f"The daemon did not answer {method} {path} in time ({type(e).__name__})")
    return DaemonError(f"{method} {path} failed: {type(e).__name__}: {e}")


def _params(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


def _reader(model: type[M]) -> Callable[[httpx.Response], M]:
    """Reads an answer as `model` (an error answer raises ApiRequestError)."""
    def read(resp: httpx.Response) -> M:
        _raise_for(resp)
        return model.model_validate(resp.json())
    return read


def _json_object(resp: httpx.Response) -> dict[str, Any]:
    """Reads an answer that has no API model (an empty body is `{}`)."""
    _raise_for(resp)
    body = resp.json() if resp.content else {}
    return body if isinstance(body, dict) else {"value": body}


class _ProgressReader:
    """A file wrapper that reports each read's size (httpx streams multipart bodies by reading chunks)."""

    def __init__(self, f: BinaryIO, on_progress: Callable[[int], None]) -> None:
        self._f = f
        self._on_progress = on_progress

    def read(self, n: int = -1) -> bytes:
        chunk = self._f.read(n)
        if chunk:
            self._on_progress(len(chunk))
        return chunk

    def fileno(self) -> int:
        return self._f.fileno()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


class Client(_Api):
    """Synchronous client (CLI, scripts)."""

    def __init__(self, endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint = endpoint
        self._http = httpx.Client(timeout=timeout, **endpoint.transport_kwargs(asynchronous=False))

    @classmethod
    def connect(cls, home: str | os.PathLike[str] | None = None, socket: str | None = None,
                url: str | None = None, token: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Client:
        return cls(Endpoint.discover(home, socket, url, token), timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _send(self, request: _Request[T]) -> T:
        try:
            resp = self._http.request(request.method, request.path, json=_payload(request.json), **request.options)
        except (httpx.HTTPError, OSError) as e:
            raise _transport_error(self.endpoint, request.method, request.path, e) from e
        return request.read(resp)

    def upload_file(self, path: str, purpose: str = "fine-tune", force: bool = False,
                    on_progress: Callable[[int], None] | None = None) -> api.FileObject:
        """Multipart upload (works against a remote daemon too); `on_progress(n)` gets each chunk's size."""
        data = {"purpose": purpose, "source_path": str(Path(path).resolve())}
        if force:
            data["force"] = "true"
        with open(path, "rb") as f:
            body: Any = _ProgressReader(f, on_progress) if on_progress else f
            return self._send(_request("POST", "/v1/files", api.FileObject, files={"file": (Path(path).name, body)},
                                       data=data, timeout=None))

    def add_file(self, path: str, purpose: str = "fine-tune", force: bool = False,
                 on_progress: Callable[[int], None] | None = None) -> api.FileObject:
        """A local file into the store: hash it here, ask the daemon, upload only if it lacks those bytes.

        Works against a daemon on another machine (--ssh, --url): bytes travel, never a local path. A stored copy
        kept with errors (`force`) is only reused when `force` is asked for again, so errors are still reported.
        """
        stored = self.find_file(file_sha256(path))
        if stored is not None and (force or not stored.status_details):
            return stored
        return self.upload_file(path, purpose=purpose, force=force, on_progress=on_progress)

    def stream(self, job_id: str | None = None) -> Iterator[api.StreamEvent]:
        """Server-sent events, forever (until the caller stops iterating or the daemon goes away)."""
        params = _params(job_id=job_id)
        try:
            with self._http.stream("GET", "/v1/stream", params=params, timeout=httpx.Timeout(None)) as resp:
                _raise_for(resp)
                yield from _sse_events(resp.iter_lines())
        except httpx.ConnectError as e:
            raise DaemonNotRunning(str(e)) from e


class AsyncClient(_Api):
    """Asynchronous client (the TUI's workers)."""

    def __init__(self, endpoint: Endpoint, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.endpoint = endpoint
        self._http = httpx.AsyncClient(timeout=timeout, **endpoint.transport_kwargs(asynchronous=True))

    @classmethod
    def connect(cls, home: str | os.PathLike[str] | None = None, socket: str | None = None,
                url: str | None = None, token: str | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> AsyncClient:
        return cls(Endpoint.discover(home, socket, url, token), timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, request: _Request[T]) -> T:
        try:
            resp = await self._http.request(request.method, request.path, json=_payload(request.json),
                                            **request.options)
        except (httpx.HTTPError, OSError) as e:
            raise _transport_error(self.endpoint, request.method, request.path, e) from e
        return request.read(resp)

    async def stream(self, job_id: str | None = None) -> AsyncIterator[api.StreamEvent]:
        params = _params(job_id=job_id)
        try:
            async with self._http.stream("GET", "/v1/stream", params=params, timeout=httpx.Timeout(None)) as resp:
                _raise_for(resp)
                data: list[str] = []
                async for line in resp.aiter_lines():
                    event = _sse_line(line, data)
                    if event is not None:
                        yield event
        except httpx.ConnectError as e:
            raise DaemonNotRunning(str(e)) from e


def _sse_line(line: str, data: list[str]) -> api.StreamEvent | None:
    if line.startswith("data:"):
        data.append(line[5:].strip())
        return None
    if line == "" and data:
        payload = "\n".join(data)
        data.clear()
        try:
            return api.StreamEvent.model_validate(json.loads(payload))
        except ValueError:
            return None
    return None


def _sse_events(lines: Iterator[str]) -> Iterator[api.StreamEvent]:
    data: list[str] = []
    for line in lines:
        event = _sse_line(line, data)
        if event is not None:
            yield event
