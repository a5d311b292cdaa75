"""Fine-tuning jobs: OpenAI's endpoints plus metrics, validation, samples and log extensions."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from daemon import api, stats
from daemon.cluster_jobs import NO_TCP, cluster_log
from daemon.context import DaemonContext, ctx_of
from daemon.errors import ApiError, bad_request, conflict, not_found
from daemon.executors import ExecutorUnavailable
from daemon.jobs import build_job, validate_grader_spec
from daemon.procs import log_tail
from daemon.rescoring import RescoreJob, compare_validation, grade_outputs, rescoring_object
from daemon.routes import errors
from daemon.store import load_placement

router = APIRouter(prefix="/v1/fine_tuning/jobs")


def _job_row(ctx: DaemonContext, job_id: str) -> dict:
    row = ctx.store.get_job_row(job_id)
    if row is None:
        raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
    return row


def _limit(limit: int, maximum: int = 10_000) -> int:
    if not 1 <= limit <= maximum:
        raise bad_request(f"limit must be between 1 and {maximum}", param="limit")
    return limit


@router.post("", response_model=api.FineTuningJob, responses=errors(400, 503, 507))
async def create_job(request: Request, body: api.JobCreateRequest) -> api.FineTuningJob:
    ctx = ctx_of(request)
    if body.cluster is not None and ctx.tcp is None:
        raise bad_request(f"Cluster jobs need the daemon on TCP: {NO_TCP}", param="cluster", code="no_tcp")
    row = await run_in_threadpool(build_job, ctx.store, ctx.paths, body, ctx.clusters)
    await run_in_threadpool(ctx.store.insert_job, row, "Validating training file")
    ctx.bus.publish(api.StreamEventType.job_created, job_id=row["id"], status=api.JobStatus.validating_files)
    await run_in_threadpool(ctx.scheduler.validate_and_queue, row["id"])  # the scheduler's writes: off the loop
    return ctx.store.job_object(_job_row(ctx, row["id"]))


@router.get("", response_model=api.ListObject[api.FineTuningJob], responses=errors(503))
def list_jobs(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=10_000),
              status: str | None = Query(None, pattern=api.JOB_STATUS_FILTER_PATTERN,
                                         description="statuses separated by commas")) -> Response:
    ctx = ctx_of(request)
    _limit(limit)
    statuses = None
    if status:
        statuses = [s.strip() for s in status.split(",") if s.strip()]
        bad = [s for s in statuses if s not in {x.value for x in api.JobStatus}]
        if bad:
            raise bad_request(f"Unknown status {bad[0]!r}", param="status")
    rows = ctx.store.list_job_rows(after=after, limit=limit + 1, statuses=statuses)
    # lists leave out each job's snapshot (large; GET /jobs/{id} has it)
    data = [ctx.store.job_object(r, with_snapshot=False) for r in rows[:limit]]
    page = api.ListObject[api.FineTuningJob](data=data, has_more=len(rows) > limit,
                                             first_id=data[0].id if data else None,
                                             last_id=data[-1].id if data else None)
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/{job_id}", response_model=api.FineTuningJob, responses=errors(404, 503))
def retrieve_job(request: Request, job_id: str) -> api.FineTuningJob:
    ctx = ctx_of(request)
    return ctx.store.job_object(_job_row(ctx, job_id))


def _control(request: Request, job_id: str, action: str) -> api.FineTuningJob:
    ctx = ctx_of(request)
    row = _job_row(ctx, job_id)
    status = api.JobStatus(row["status"])
    if action == "cancel":
        if status.is_terminal():
            raise conflict(f"Job {job_id} is already {status.value}.", param="fine_tuning_job_id",
                           code="job_not_cancellable")
        ctx.scheduler.cancel(job_id)
    elif action == "pause":
        if status not in (api.JobStatus.running, api.JobStatus.queued, api.JobStatus.validating_files):
            raise conflict(f"Job {job_id} is {status.value}; only running or queued jobs can be paused.",
                           param="fine_tuning_job_id", code="job_not_pausable")
        ctx.scheduler.pause(job_id)
    elif action == "resume":
        if status is not api.JobStatus.paused:
            raise conflict(f"Job {job_id} is {status.value}; only paused jobs can be resumed.",
                           param="fine_tuning_job_id", code="job_not_resumable")
        ctx.scheduler.resume(job_id)
    return ctx.store.job_object(_job_row(ctx, job_id))


@router.post("/{job_id}/cancel", response_model=api.FineTuningJob, responses=errors(404, 409, 503, 507))
async def cancel_job(request: Request, job_id: str) -> api.FineTuningJob:
    return await run_in_threadpool(_control, request, job_id, "cancel")  # a locked store: 503, off the loop


@router.post("/{job_id}/pause", response_model=api.FineTuningJob, responses=errors(404, 409, 503, 507))
async def pause_job(request: Request, job_id: str) -> api.FineTuningJob:
    return await run_in_threadpool(_control, request, job_id, "pause")  # a locked store: 503, off the loop


@router.post("/{job_id}/resume", response_model=api.FineTuningJob, responses=errors(404, 409, 503, 507))
async def resume_job(request: Request, job_id: str) -> api.FineTuningJob:
    return await run_in_threadpool(_control, request, job_id, "resume")  # a locked store: 503, off the loop


@router.get("/{job_id}/events", response_model=api.ListObject[api.JobEvent], responses=errors(404, 503))
def list_events(request: Request, job_id: str, after: str | None = None, limit: int = Query(20, ge=1, le=10_000),
                order: Literal["asc", "desc"] = "desc") -> api.ListObject[api.JobEvent]:
    ctx = ctx_of(request)
    _job_row(ctx, job_id)
    _limit(limit)
    if order not in ("asc", "desc"):
        raise bad_request("order must be 'asc' or 'desc'", param="order")
    data, has_more = ctx.store.list_events(job_id, after=after, limit=limit, order=order)
    return api.ListObject[api.JobEvent](data=data, has_more=has_more, first_id=data[0].id if data else None,
                                        last_id=data[-1].id if data else None)


@router.get("/{job_id}/checkpoints", response_model=api.ListObject[api.JobCheckpoint], responses=errors(404, 503))
def list_checkpoints(request: Request, job_id: str, after: str | None = None,
                     limit: int = Query(10, ge=1, le=1000)) -> api.ListObject[api.JobCheckpoint]:
    ctx = ctx_of(request)
    _job_row(ctx, job_id)
    _limit(limit, 1000)
    data = ctx.store.checkpoints(job_id)
    if after:
        ids = [c.id for c in data]
        data = data[ids.index(after) + 1:] if after in ids else data
    page = data[:limit]
    return api.ListObject[api.JobCheckpoint](data=page, has_more=len(data) > limit,
                                             first_id=page[0].id if page else None,
                                             last_id=page[-1].id if page else None)


@router.get("/{job_id}/metrics", response_model=api.MetricsPage, responses=errors(404, 503))
def metrics(request: Request, job_id: str, after_step: int | None = Query(None, ge=api.INT64_MIN, le=api.INT64_MAX),
            limit: int = Query(10_000, ge=1, le=100_000)) -> Response:
    ctx = ctx_of(request)
    _job_row(ctx, job_id)
    _limit(limit, 100_000)
    data = ctx.store.metrics(job_id, after_step=after_step, limit=limit + 1)
    page = data[:limit]
    body = api.MetricsPage(job_id=job_id, data=page, last_step=page[-1].step if page else after_step,
                           has_more=len(data) > limit)
    return Response(body.model_dump_json(), media_type="application/json")


RescoringName = Query(None, pattern=api.RESCORING_NAME_PATTERN,
                      description="read a named re-scoring's rewards instead of the original scores")


def _rescoring_row(ctx: DaemonContext, job_id: str, name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    row = ctx.store.rescoring_row(job_id, name)
    if row is None:
        raise ApiError(404, f"Job {job_id} has no re-scoring named {name!r}", param="rescoring",
                       code="rescoring_not_found")
    return row


def _validation_steps(ctx: DaemonContext, job_id: str, rescoring: dict[str, Any] | None) -> list[int]:
    if rescoring is None:
        return ctx.store.validation_steps(job_id)
    return ctx.store.rescored_validation_steps(str(rescoring["id"]))


def _step_in(steps: list[int], step: int, job_id: str, param: str) -> int:
    if step not in steps:
        raise ApiError(404, f"No validation at step {step} for job {job_id} (steps: {steps})", param=param,
                       code="validation_not_found")
    return step


@router.get("/{job_id}/validation", response_model=api.ValidationPage, responses=errors(404, 503))
def validation(request: Request, job_id: str,
               step: int | None = Query(None, ge=api.INT64_MIN, le=api.INT64_MAX),
               rescoring: str | None = RescoringName) -> api.ValidationPage:
    ctx = ctx_of(request)
    _job_row(ctx, job_id)
    rescored = _rescoring_row(ctx, job_id, rescoring)
    steps = _validation_steps(ctx, job_id, rescored)
    if step is None:
        step = steps[-1] if steps else None
    else:
        _step_in(steps, step, job_id, "step")
    rows = ctx.store.validation_rows(job_id, step) if step is not None else []
    if rescored is not None and step is not None:
        scores = ctx.store.rescored_validation(str(rescored["id"]), step)
        rows = [r.model_copy(update={"reward": s.reward, "sub_rewards": s.sub_rewards, "errors": s.errors})
                for r in rows if (s := scores.get(r.row_index)) is not None]
    summary: dict[str, float] = {}
    if rows:
        rewards = [r.reward for r in rows]
        summary = {"reward_mean": sum(rewards) / len(rewards),
                   "pass_rate": sum(1 for x in rewards if x >= 1.0) / len(rewards), "rows": float(len(rows))}
        summary.update(_tool_summary(rows))
    return api.ValidationPage(job_id=job_id, step=step, steps=steps, data=rows, summary=summary)


@router.get("/{job_id}/validation/compare", response_model=api.ValidationCompare, responses=errors(404, 503))
async def validation_compare(
        request: Request, job_id: str,
        base_step: int = Query(0, ge=0, le=api.INT64_MAX, description="the step compared against (0 = base model)"),
        step: int | None = Query(None, ge=0, le=api.INT64_MAX, description="default: the latest validated step"),
        rescoring: str | None = RescoringName,
        resamples: int = Query(stats.DEFAULT_RESAMPLES, ge=stats.DEFAULT_RESAMPLES, le=100_000,
                               description="paired-bootstrap resamples for ci95"),
        seed: int = Query(stats.DEFAULT_SEED, ge=0, le=api.MAX_SEED, description="the bootstrap's seed"),
) -> api.ValidationCompare:
    """Extension: base vs checkpoint over paired validation rows: mean difference, 95 % paired-bootstrap
    interval, exact sign test, overall and per sub-grader (computed off the event loop)."""
    ctx = ctx_of(request)
    return await run_in_threadpool(_compare, ctx, job_id, base_step, step, rescoring, resamples, seed)


def _compare(ctx: DaemonContext, job_id: str, base_step: int, step: int | None, rescoring: str | None,
             resamples: int, seed: int) -> api.ValidationCompare:
    _job_row(ctx, job_id)
    rescored = _rescoring_row(ctx, job_id, rescoring)
    steps = _validation_steps(ctx, job_id, rescored)
    if not steps:
        raise ApiError(404, f"Job {job_id} has no validation yet", param="step", code="validation_not_found")
    step = _step_in(steps, steps[-1] if step is None else step, job_id, "step")
    base_step = _step_in(steps, base_step, job_id, "base_step")
    return compare_validation(ctx.store, job_id, base_step, step, resamples, seed, rescored)


@router.post("/{job_id}/rescore", response_model=api.Rescoring, responses=errors(400, 404, 409, 503, 507))
async def rescore(request: Request, job_id: str, body: api.RescoreRequest) -> api.Rescoring:
    """Extension: grade the job's stored validation outputs (and training samples) again with another grader;
    kept as a named re-scoring beside the original scores, which are never changed."""
    ctx = ctx_of(request)
    started = time.perf_counter()
    job = await run_in_threadpool(_prepare_rescore, ctx, job_id, body)
    scored = await _grade(body.grader, job.outputs, job.items)
    result = await run_in_threadpool(job.keep, scored, started)
    await run_in_threadpool(ctx.store.add_event, job_id, _rescore_message(result),
                            data={"rescoring": result.name, "rescoring_id": result.id})
    return result


@router.get("/{job_id}/rescore", response_model=api.ListObject[api.Rescoring], responses=errors(404, 503))
def list_rescorings(request: Request, job_id: str) -> api.ListObject[api.Rescoring]:
    """Extension: a job's re-scorings, oldest first."""
    ctx = ctx_of(request)
    _job_row(ctx, job_id)
    data = [rescoring_object(r) for r in ctx.store.rescoring_rows(job_id)]
    return api.ListObject[api.Rescoring](data=data, first_id=data[0].id if data else None,
                                         last_id=data[-1].id if data else None)


def _prepare_rescore(ctx: DaemonContext, job_id: str, body: api.RescoreRequest) -> RescoreJob:
    row = _job_row(ctx, job_id)
    validate_grader_spec(body.grader, param="grader")
    job = RescoreJob(ctx.store, row, body)
    job.collect()
    return job


async def _grade(grader: dict[str, Any], outputs: list[str | dict[str, Any]],
                 items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grade in a thread, or in the torch-capable helper process for graders that need it."""
    import graders
    from daemon.routes.graders import in_helper_process

    if not outputs:
        return []
    if graders.needs_heavy_libraries(grader):
        return await run_in_threadpool(in_helper_process, grade_outputs, grader, outputs, items, timeout=3600)
    return await run_in_threadpool(grade_outputs, grader, outputs, items)


def _rescore_message(r: api.Rescoring) -> str:
    parts = [f"step {s.step}: {_num(s.original_mean)} -> {_num(s.mean)}" for s in r.steps]
    if r.samples is not None:
        parts.append(f"{r.samples.samples} samples: {_num(r.samples.original_mean)} -> {_num(r.samples.mean)}")
    return f"Re-scored as {r.name!r} (original scores kept): " + ("; ".join(parts) or "nothing to grade")


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


@router.get("/{job_id}/samples", response_model=api.SamplesPage, responses=errors(404, 503))
def samples(request: Request, job_id: str, after_step: int | None = Query(None, ge=api.INT64_MIN, le=api.INT64_MAX),
            limit: int = Query(100, ge=1, le=10_000),
            before_id: int | None = Query(None, ge=api.INT64_MIN, le=api.INT64_MAX)) -> api.SamplesPage:
    ctx = ctx_of(request)
    _job_row(ctx, job_id)
    _limit(limit, 10_000)
    data, has_more = ctx.store.samples(job_id, after_step=after_step, limit=limit, before_id=before_id)
    return api.SamplesPage(job_id=job_id, data=data, has_more=has_more)


@router.get("/{job_id}/alarms", response_model=api.ListObject[api.JobAlarm], responses=errors(404, 503))
def list_alarms(request: Request, job_id: str) -> api.ListObject[api.JobAlarm]:
    """Extension: every alarm the job raised, oldest first (each episode once; `cleared_at` once it recovered)."""
    ctx = ctx_of(request)
    _job_row(ctx, job_id)
    data = ctx.store.alarms(job_id)
    return api.ListObject[api.JobAlarm](data=data, has_more=False, first_id=data[0].id if data else None,
                                        last_id=data[-1].id if data else None)


@router.get("/{job_id}/log", response_model=api.JobLog, responses=errors(404, 503))
def job_log(request: Request, job_id: str, lines: int = Query(200, ge=1, le=100_000)) -> api.JobLog:
    ctx = ctx_of(request)
    _limit(lines, 100_000)
    row = _job_row(ctx, job_id)
    path = ctx.paths.job_log(job_id)
    text = log_tail(path, lines)
    if row["cluster"] and row["engine_id"]:  # the engine's log of the latest submission, mirrored by the watcher
        engine_log = cluster_log(ctx.paths.job_dir(job_id), row["engine_id"])
        text = (text + log_tail(engine_log, lines))[-lines:]
    return api.JobLog(job_id=job_id, path=str(path) if path.exists() else None, lines=text)


@router.get("/{job_id}/script", response_model=api.JobScript, responses=errors(404, 409, 500, 503))
def job_script(request: Request, job_id: str) -> api.JobScript:
    """What a cluster job is (or will be) submitted as: the sbatch script, or Ray's entrypoint and runtime_env."""
    ctx = ctx_of(request)
    row = _job_row(ctx, job_id)
    if not row["cluster"]:
        raise conflict(f"Job {job_id} runs on this machine; only cluster jobs have a submission script",
                       param="fine_tuning_job_id", code="not_a_cluster_job")
    placement = load_placement(row)
    assert placement is not None  # every cluster job is created with one
    try:
        script = ctx.scheduler.cluster_jobs.describe(row)
    except ExecutorUnavailable as e:
        raise conflict(str(e), param="cluster", code="cluster_unavailable") from None
    return api.JobScript(job_id=job_id, cluster=row["cluster"], kind=placement.kind, script=script)


def _tool_summary(rows: list[api.ValidationRow]) -> dict[str, float]:
    """Agent RFT: tool use over the page's episodes (rows with a trajectory); {} when none has one."""
    episodes = [r for r in rows if r.output_messages is not None]
    if not episodes:
        return {}
    calls = [c for r in episodes for c in r.tool_calls or []]
    return {"tool_call_rate": sum(1 for r in episodes if r.tool_calls) / len(episodes),
            "tool_calls_per_episode": len(calls) / len(episodes),
            "tool_error_rate": sum(1 for c in calls if c.error is not None) / len(calls) if calls else 0.0}
