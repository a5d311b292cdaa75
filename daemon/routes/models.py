"""`POST /v1/models/check`: is a model reference loadable? Answered in about a second, without torch.

Creating a job and pre-flight call the same check first, so a misspelled model fails at once with a
"did you mean …" instead of a minute later in the worker with a hub connection error.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from daemon import api
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


@router.post("/v1/models/check", response_model=api.ModelCheck, responses=errors(400))
async def check_model(body: api.ModelCheckRequest) -> api.ModelCheck:
    return await checked_model(body.model)
