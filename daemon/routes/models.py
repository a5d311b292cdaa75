"""`GET /v1/models` (what can be trained here), `GET /v1/doctor`, and `POST /v1/models/check`: is a model
reference loadable? Answered in about a second, without torch.

Creating a job and pre-flight call the same check first, so a misspelled model fails at once with a
"did you mean …" instead of a minute later in the worker with a hub connection error.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from daemon import api
from daemon.context import ctx_of
from daemon.errors import bad_request
from daemon.models import ModelNotFound, check_model_ref
from daemon.routes import errors

router = APIRouter()


async def checked_model(model: str, param: str = "model") -> api.ModelCheck:
    """The check as the API answers it; a reference no worker could load is a 400 naming `param`."""
    try:
        ref = await run_in_threadpool(check_model_ref, model)  # may wait on one short hub request
    except ModelNotFound as e:
        raise bad_request(str(e), param=param, code="model_not_found") from None
    return api.ModelCheck(model=ref.model, source=ref.source, id=ref.id, revision=ref.revision,  # type: ignore[arg-type]
                          cached=ref.cached, detail=ref.detail)


@router.get("/v1/models", response_model=api.ListObject[api.LocalModel], responses=errors(503))
async def list_models(request: Request) -> api.ListObject[api.LocalModel]:
    """OpenAI's model list: the built-in models and the local Hugging Face cache's, with size and fit verdict."""
    from daemon.local_models import list_models as local

    data = await run_in_threadpool(local, ctx_of(request).paths)
    return api.ListObject[api.LocalModel](data=data, first_id=data[0].id if data else None,
                                          last_id=data[-1].id if data else None)


@router.get("/v1/doctor", response_model=api.DoctorReport, responses=errors(503))
async def doctor(request: Request) -> api.DoctorReport:
    """Is this machine ready to train: Python, torch, CUDA, GPUs, vLLM, sandbox, disk, HF cache (ok/warn/fail)."""
    from daemon.doctor import run

    return await run_in_threadpool(run, ctx_of(request).paths)


@router.post("/v1/models/check", response_model=api.ModelCheck, responses=errors(400))
async def check_model(body: api.ModelCheckRequest) -> api.ModelCheck:
    return await checked_model(body.model)
