"""OpenAI's grader endpoints: POST /v1/fine_tuning/alpha/graders/run and /validate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from daemon import api
from daemon.errors import bad_request

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders")


def _parse(grader: dict[str, Any]) -> Any:
    import graders

    errors = graders.validate_grader(grader)
    if errors:
        raise bad_request(f"Invalid grader: {'; '.join(errors)}", param="grader", code="invalid_grader")
    return graders.parse_grader(grader)


def _run(body: api.GraderRunRequest) -> dict[str, Any]:
    import graders

    grader = _parse(body.grader)
    item = dict(body.item or {})
    if body.reference_answer is not None:
        item.setdefault("reference_answer", body.reference_answer)
    return graders.run_grader(grader, body.model_sample, item).to_dict()


@router.post("/run", response_model=api.GraderRunResponse)
async def run(body: api.GraderRunRequest) -> dict[str, Any]:
    return await run_in_threadpool(_run, body)


def _validate(body: api.GraderValidateRequest) -> api.GraderValidateResponse:
    import graders

    errors = graders.validate_grader(body.grader)
    if errors:
        raise bad_request(f"Invalid grader: {'; '.join(errors)}", param="grader", code="invalid_grader")
    fields = sorted(graders.template_item_fields(graders.parse_grader(body.grader)))
    return api.GraderValidateResponse(grader=body.grader, errors=[], item_fields=fields)


@router.post("/validate", response_model=api.GraderValidateResponse)
async def validate(body: api.GraderValidateRequest) -> api.GraderValidateResponse:
    return await run_in_threadpool(_validate, body)
