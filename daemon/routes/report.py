"""Reporting over the API: where a worker that cannot open the store appends its job's records (issue 12).

`/v1/fine_tuning/jobs/{id}/report/*` is declared like every route, but it is the workers' side of the API:
besides the owner (Unix socket, or the TCP owner token), the job's own reporting token reaches it -- and
nothing else (the access guard in daemon/server.py lets such a token through to these paths only; here it must
name this job and match the hash the store keeps). Appends are idempotent: by record id, and steps by number.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from daemon import api
from daemon.context import DaemonContext, ctx_of
from daemon.errors import ApiError, not_found
from daemon.routes import errors
from daemon.store import checkpoint_object, job_of_token

router = APIRouter(prefix="/v1/fine_tuning/jobs/{job_id}/report")

#: The ASGI scope key under which the access guard hands a job token to these routes.
JOB_TOKEN_SCOPE = "rft.job_token"


def _authorized(request: Request, job_id: str) -> DaemonContext:
    """The owner may report for any job; a job token only for its own job, and only while it is that job's."""
    ctx = ctx_of(request)
    token = request.scope.get(JOB_TOKEN_SCOPE)
    if token is not None:
        owner_job = job_of_token(token)
        if owner_job != job_id:
            raise ApiError(403, f"This reporting token belongs to job {owner_job}; it cannot reach job {job_id}.",
                           type="permission_error", param="fine_tuning_job_id", code="job_token_scope")
        if not ctx.store.job_token_matches(job_id, token):
            raise ApiError(401, f"The reporting token for job {job_id} is not valid (the job ended -- succeeded, "
                           "failed, or cancelled beyond its grace -- or a newer submission's token replaced it).",
                           type="authentication_error", code="invalid_job_token")
    if ctx.store.get_job_row(job_id) is None:
        raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
    return ctx


@router.post("/records", response_model=api.ReportAck, responses=errors(401, 403, 404, 503, 507))
def append_records(request: Request, job_id: str, body: api.ReportBatch) -> api.ReportAck:
    """Append a worker's records in order, in one transaction; records applied before are skipped.

    An empty list appends nothing and answers the job's control state: the reporter's poll for pause/cancel.
    """
    ctx = _authorized(request, job_id)
    applied = 0
    if body.records:  # an empty append is a control poll: no write transaction
        with ctx.store.tx():
            for record in body.records:
                applied += bool(ctx.store.apply_report(job_id, record))
        ctx.scheduler.on_worker_notify(job_id)  # live views hear of it as they do of a local worker's commit
    control = ctx.store.report_control(job_id)
    if control is None:
        raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
    return api.ReportAck(applied=applied, duplicates=len(body.records) - applied, control=control)


@router.get("/state", response_model=api.ReportJobState, responses=errors(401, 403, 404, 503))
def report_state(request: Request, job_id: str) -> api.ReportJobState:
    """What a (re)starting worker needs: status, attempt, resume point, the steps already stored."""
    ctx = _authorized(request, job_id)
    state = ctx.store.report_state(job_id)
    if state is None:
        raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
    return state


@router.get("/spec", response_model=api.JobSnapshot, responses=errors(401, 403, 404, 409, 503))
def report_spec(request: Request, job_id: str) -> api.JobSnapshot:
    """The job's snapshot (files, grader, resolved hyperparameters): what the worker trains with."""
    ctx = _authorized(request, job_id)
    row = ctx.store.get_job_row(job_id)
    if row is None:
        raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
    if not row["snapshot"]:
        raise ApiError(409, f"Job {job_id} has no snapshot yet.", param="fine_tuning_job_id", code="no_snapshot")
    return api.JobSnapshot.from_json(row["snapshot"])


@router.get("/checkpoints_to_delete", response_model=api.ListObject[api.JobCheckpoint],
            responses=errors(401, 403, 404, 503))
def checkpoints_to_delete(request: Request, job_id: str) -> api.ListObject[api.JobCheckpoint]:
    """Live checkpoints the keep rule (3 best by validation reward + the latest) lets go."""
    ctx = _authorized(request, job_id)
    data = [checkpoint_object(r) for r in ctx.store.checkpoints_to_delete(job_id)]
    return api.ListObject[api.JobCheckpoint](data=data, first_id=data[0].id if data else None,
                                             last_id=data[-1].id if data else None)
