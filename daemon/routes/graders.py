"""OpenAI's grader endpoints: POST /v1/fine_tuning/alpha/graders/run and /validate.

Declarative and python graders run in the daemon (python ones in the graders sandbox pool). Graders that
need torch — `cosine` similarity, local `hf:` judges — run in a separate process, so the daemon itself
never imports torch.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import threading
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from daemon import api
from daemon.errors import bad_request

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders")

_heavy_pool: concurrent.futures.ProcessPoolExecutor | None = None
_heavy_lock = threading.Lock()


def needs_heavy_libraries(spec: Any) -> bool:
    """True if grading this spec loads torch (embeddings for cosine, a local HF judge model)."""
    if isinstance(spec, dict):
        if spec.get("type") == "text_similarity" and spec.get("evaluation_metric") == "cosine":
            return True
        if spec.get("type") in ("score_model", "label_model") and str(spec.get("model", "")).startswith("hf:"):
            return True
        return any(needs_heavy_libraries(v) for v in spec.values())
    if isinstance(spec, list):
        return any(needs_heavy_libraries(v) for v in spec)
    return False


def _heavy_executor() -> concurrent.futures.ProcessPoolExecutor:
    global _heavy_pool
    with _heavy_lock:
        if _heavy_pool is None:
            _heavy_pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return _heavy_pool


def shutdown_heavy_pool() -> None:
    global _heavy_pool
    with _heavy_lock:
        if _heavy_pool is not None:
            _heavy_pool.shutdown(wait=False, cancel_futures=True)
            _heavy_pool = None


def grade_once(grader: dict[str, Any], sample: str, item: dict[str, Any]) -> dict[str, Any]:
    """Run one grader on one sample (in whichever process calls it); the result as OpenAI's JSON."""
    import graders

    return graders.run_grader(graders.parse_grader(grader), sample, item).to_dict()


def _check(grader: dict[str, Any]) -> None:
    import graders

    errors = graders.validate_grader(grader)
    if errors:
        raise bad_request(f"Invalid grader: {'; '.join(errors)}", param="grader", code="invalid_grader")


def _run(body: api.GraderRunRequest) -> dict[str, Any]:
    _check(body.grader)
    item = dict(body.item or {})
    if body.reference_answer is not None:
        item.setdefault("reference_answer", body.reference_answer)
    if needs_heavy_libraries(body.grader):
        try:
            return _heavy_executor().submit(grade_once, body.grader, body.model_sample, item).result(timeout=600)
        except concurrent.futures.process.BrokenProcessPool:
            shutdown_heavy_pool()
            raise
    return grade_once(body.grader, body.model_sample, item)


@router.post("/run", response_model=api.GraderRunResponse)
async def run(body: api.GraderRunRequest) -> dict[str, Any]:
    return await run_in_threadpool(_run, body)


def _validate(body: api.GraderValidateRequest) -> api.GraderValidateResponse:
    import graders

    _check(body.grader)
    fields = sorted(graders.template_item_fields(graders.parse_grader(body.grader)))
    return api.GraderValidateResponse(grader=body.grader, errors=[], item_fields=fields)


@router.post("/validate", response_model=api.GraderValidateResponse)
async def validate(body: api.GraderValidateRequest) -> api.GraderValidateResponse:
    return await run_in_threadpool(_validate, body)
