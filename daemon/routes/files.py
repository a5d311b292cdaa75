"""Files: multipart upload, import by path, validate, list, retrieve, content, paged rows (OpenAI's shapes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from daemon import api, files
from daemon.context import ctx_of
from daemon.errors import bad_request
from daemon.routes import errors, media

router = APIRouter()


@router.post("/v1/files", response_model=api.FileObject, responses=errors(400, 503, 507))
async def upload_file(request: Request, file: UploadFile,
                      purpose: Annotated[api.FilePurposeName, Form()] = "fine-tune",
                      force: bool = Form(False), source_path: str | None = Form(None)) -> api.FileObject:
    ctx = ctx_of(request)
    obj = await run_in_threadpool(files.import_stream, ctx.store, ctx.paths, file.file,
                                  file.filename or "upload.jsonl", purpose, source_path, force)
    ctx.bus.publish(api.StreamEventType.file_created, data={"file_id": obj.id})
    return obj


@router.post("/v1/files/import", response_model=api.FileObject, responses=errors(400, 503, 507))
async def import_file(request: Request, body: api.FileImportRequest) -> api.FileObject:
    ctx = ctx_of(request)
    obj = await run_in_threadpool(files.import_path, ctx.store, ctx.paths, body.path, body.purpose, body.force)
    ctx.bus.publish(api.StreamEventType.file_created, data={"file_id": obj.id})
    return obj


@router.post("/v1/files/validate", response_model=api.ValidationReport, responses=errors(400, 404, 409, 503))
async def validate_file(request: Request, body: api.FileValidateRequest) -> api.ValidationReport:
    ctx = ctx_of(request)
    return await run_in_threadpool(files.validate, ctx.store, ctx.paths, body)


@router.get("/v1/files/{file_id}/rows", response_model=api.FileRowsPage, responses=errors(404, 409, 503))
async def file_rows(request: Request, file_id: str, offset: int = Query(0, ge=0),
                    limit: int = Query(50, ge=1, le=files.MAX_PAGE)) -> api.FileRowsPage:
    return await run_in_threadpool(files.rows_page, ctx_of(request).store, file_id, offset, limit)


@router.get("/v1/files", response_model=api.ListObject[api.FileObject], responses=errors(503))
def list_files(request: Request, after: str | None = None, limit: int = Query(100, ge=1, le=10_000),
               purpose: str | None = None, sha256: str | None = None) -> api.ListObject[api.FileObject]:
    ctx = ctx_of(request)
    if not 1 <= limit <= 10_000:
        raise bad_request("limit must be between 1 and 10000", param="limit")
    if sha256 is not None:  # "is this content stored?": clients hash locally and upload only when it is not
        found = ctx.store.file_by_sha(sha256.lower())
        rows = [found] if found is not None else []
    else:
        rows = ctx.store.list_file_rows(after=after, limit=limit + 1)
    data = [ctx.store.file_object(r) for r in rows[:limit] if purpose is None or r["purpose"] == purpose]
    return api.ListObject[api.FileObject](data=data, has_more=len(rows) > limit,
                                          first_id=data[0].id if data else None,
                                          last_id=data[-1].id if data else None)


@router.get("/v1/files/{file_id}", response_model=api.FileObject, responses=errors(404, 503))
def retrieve_file(request: Request, file_id: str) -> api.FileObject:
    ctx = ctx_of(request)
    return ctx.store.file_object(files.get_file(ctx.store, file_id))


@router.get("/v1/files/{file_id}/content", response_class=StreamingResponse,
            responses={**media("application/jsonl", "The stored file, byte for byte (JSON Lines)"),
                       **errors(404, 409, 503)})
def file_content(request: Request, file_id: str) -> StreamingResponse:
    row = files.get_file(ctx_of(request).store, file_id)
    return StreamingResponse(files.iter_content(row), media_type="application/jsonl",
                             headers={"Content-Length": str(row["bytes"])})
