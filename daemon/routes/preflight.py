"""Pre-flight (`POST /v1/fine_tuning/preflight`) and export (`POST /v1/fine_tuning/jobs/{id}/export`).

Both need torch, so both run in a subprocess (`python -m daemon.worker.preflight`, `python -m daemon.worker.export`,
through `daemon.helper_process`); the daemon itself never imports it.
"""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from daemon import api, checkpoint_storage
from daemon.context import ctx_of
from daemon.errors import bad_request, conflict, not_found
from daemon.export_card import choose_checkpoint, model_card, parse_choice
from daemon.helper_process import run_module
from daemon.jobs import build_snapshot
from daemon.routes import errors

router = APIRouter()

PREFLIGHT_TIMEOUT_S = float(os.environ.get("RFT_PREFLIGHT_TIMEOUT_S", "900"))
EXPORT_TIMEOUT_S = 900.0


@router.post("/v1/fine_tuning/preflight", response_model=api.PreflightReport, responses=errors(400, 503, 504))
async def preflight(request: Request, body: api.PreflightRequest) -> api.PreflightReport:
    ctx = ctx_of(request)
    from starlette.concurrency import run_in_threadpool

    started = time.perf_counter()
    job_req = api.JobCreateRequest.model_validate(body.model_dump(exclude={"rows", "completions_per_row",
                                                                           "estimate_only"}))
    snapshot = await run_in_threadpool(partial(build_snapshot, check_data=not body.estimate_only), ctx.store,
                                       ctx.paths, job_req)
    if body.estimate_only:  # from the config alone: no helper process, no torch, no weights
        e = snapshot.memory_estimate
        return api.PreflightReport(model=snapshot.model_ref(), estimate_only=True, memory_estimate=e,
                                   memory_estimate_error=snapshot.memory_estimate_error,
                                   verdict=e.verdict if e else f"no memory estimate: {snapshot.memory_estimate_error}",
                                   elapsed_s=round(time.perf_counter() - started, 3))
    payload = {"snapshot": snapshot.model_dump(mode="json"), "rows": body.rows,
               "completions_per_row": body.completions_per_row}
    result = await run_module("daemon.worker.preflight", [], json.dumps(payload).encode(), ctx.paths.home,
                              PREFLIGHT_TIMEOUT_S)
    report = api.PreflightReport.model_validate(result)
    report.memory_estimate = snapshot.memory_estimate
    report.memory_estimate_error = snapshot.memory_estimate_error
    return report


@router.post("/v1/fine_tuning/jobs/{job_id}/export", response_model=api.JobExportResult,
             responses=errors(400, 404, 409, 503, 504))
async def export_job(request: Request, job_id: str, body: api.JobExportRequest) -> api.JobExportResult:
    ctx = ctx_of(request)
    row = ctx.store.get_job_row(job_id)
    if row is None:
        raise not_found("fine-tuning job", job_id, param="fine_tuning_job_id")
    ckpts = ctx.store.checkpoints(job_id)
    if not ckpts:
        raise conflict(f"Job {job_id} has no checkpoint to export yet.", param="fine_tuning_job_id",
                       code="no_checkpoint")
    choice = parse_choice(body.checkpoint, body.checkpoint_step)  # best (default), latest or a step
    ckpt, why = choose_checkpoint(job_id, ckpts, choice)
    from starlette.concurrency import run_in_threadpool

    cluster = ctx.clusters.find(row["cluster"]) if row["cluster"] and ctx.clusters is not None else None
    options = cluster.defaults.storage_options if cluster is not None else None
    out, ckpt_dir = await run_in_threadpool(_export_paths, body.output_dir, body.overwrite, ckpt,
                                            ctx.paths.job_dir(job_id), options)
    snapshot = api.JobSnapshot.from_json(row["snapshot"])
    base = snapshot.model_ref()  # keeps @revision: a merge loads that revision
    card = model_card(row, snapshot, ckpt, why)
    args = [ckpt_dir, str(out), "--base", base, "--card-stdin"] + (["--merged"] if body.merged else [])
    result = await run_module("daemon.worker.export", args, card.encode(), ctx.paths.home, EXPORT_TIMEOUT_S)
    return api.JobExportResult(job_id=job_id, checkpoint=ckpt.id, step=ckpt.step_number, output_dir=str(out),
                               adapter_dir=result["adapter_dir"], merged_dir=result.get("merged_dir"),
                               base_model=base, files=result.get("files", []), chosen_because=why,
                               model_card=result.get("model_card"))


def _export_paths(output_dir: str, overwrite: bool, ckpt: api.JobCheckpoint, job_dir: Path,
                  options: dict[str, Any] | None = None) -> tuple[Path, str]:
    """The export's output and checkpoint directories, checked on disk (stat calls: run off the event loop).

    A checkpoint on a cluster's storage (an fsspec URL) is fetched first into the job's directory under
    RFT_HOME (`fetched/`, 0700; kept as a cache), with the cluster's storage options.
    """
    out = Path(output_dir).expanduser()
    if not out.is_absolute():
        raise bad_request("output_dir must be an absolute path", param="output_dir")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise conflict(f"{out} exists and is not empty (pass overwrite to write into it)", param="output_dir",
                       code="output_exists")
    if ckpt.path and checkpoint_storage.is_url(ckpt.path):
        try:
            return out, checkpoint_storage.fetch(ckpt.path, job_dir / "fetched", options)
        except Exception as e:  # noqa: BLE001 - unreachable storage, missing backend, gone, denied (botocore)
            raise conflict(f"Checkpoint {ckpt.id} could not be fetched from {ckpt.path}: {e}",
                           code="checkpoint_missing") from None
    if not ckpt.path or not Path(ckpt.path).is_dir():
        raise conflict(f"Checkpoint {ckpt.id} is gone from disk ({ckpt.path})", code="checkpoint_missing")
    return out, ckpt.path
