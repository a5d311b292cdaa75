"""The daemon's routes, and the API contract they publish on `/openapi.json`.

Each route declares the errors its handler raises (`responses=errors(404, 409)`). What every route can
answer whatever its handler does is added here once, where it happens: 401 from the TCP token guard,
400/408/413 from request validation and the body guard. FastAPI's default 422 is dropped: the server
answers validation errors as OpenAI-style 400s (daemon/server.py), which is what the schema says.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from daemon import api

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid request: the field at fault is named in `error.param`",
    401: "Over TCP: a missing or wrong bearer token (the Unix socket checks the peer's uid instead)",
    403: "A job's reporting token used for another job",
    404: "No such resource",
    408: "The request body stalled",
    409: "Conflicts with the resource's current state",
    413: "The request body is over the size limit",
    500: "The daemon's own configuration file is invalid (the message names the file and what to fix)",
    503: "The store is busy: another process holds the database lock (nothing was changed; retry)",
    504: "A helper process took longer than its time limit",
    507: "The disk holding the store is full (nothing was half-written)",
}

#: Answers any request can get from the guards and request validation, whatever its route.
_BODY_ERRORS = (400, 408, 413)
_BEARER = "bearerAuth"


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status code it raises, with the OpenAI-style error body."""
    return {code: {"model": api.ErrorResponse, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


def media(content_type: str, description: str, schema: dict[str, Any] | None = None) -> dict[int | str, Any]:
    """`responses=` for a 200 that is not JSON (JSONL file content, server-sent events)."""
    return {200: {"description": description, "content": {content_type: {"schema": schema or {"type": "string"}}}}}


def allowed_methods(app: FastAPI, path: str) -> str:
    """The `Allow` header of a 405: the methods the contract lists for this path (HEAD comes with GET)."""
    paths = contract(app).get("paths", {})
    templates = [path] if path in paths else [t for t in paths if _fits(t, path)]  # a literal path wins, as in routing
    methods = {m.upper() for t in templates for m in paths[t]}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def _fits(template: str, path: str) -> bool:
    """`/v1/files/{file_id}` fits `/v1/files/file-1` (a path parameter is one non-empty segment)."""
    want, got = template.split("/"), path.split("/")
    return len(want) == len(got) and all(w == g or (w[:1] == "{" and w[-1:] == "}" and g)
                                          for w, g in zip(want, got, strict=True))


def contract(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with what the guards add and the graders package's grader union."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                      description="rft-tui daemon: OpenAI's fine-tuning API shapes plus local extensions.")
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # never sent: validation errors are 400s
        schemas.pop(name, None)
    schemas["ErrorResponse"] = _component(api.ErrorResponse, schemas)
    _add_grader_union(doc, schemas)
    components["securitySchemes"] = {_BEARER: {
        "type": "http", "scheme": "bearer",
        "description": "Over TCP (`--tcp`): the token in $RFT_HOME/run/token. The Unix socket needs none."}}
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            _add_transport_answers(operation)
    app.openapi_schema = doc
    return doc


def _add_transport_answers(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    operation["security"] = [{_BEARER: []}]
    codes = [401]
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        codes.append(404)  # an empty path segment (`/v1/files//content`) matches no route
    if operation.get("requestBody"):
        codes += list(_BODY_ERRORS)
    elif any(_can_be_invalid(p) for p in operation.get("parameters", [])):
        codes.append(400)
    for code in codes:
        responses.setdefault(str(code), {
            "description": ERROR_DESCRIPTIONS[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}})


def _can_be_invalid(parameter: dict[str, Any]) -> bool:
    """Whether request validation can refuse this parameter (a bare optional string never is)."""
    if parameter.get("required") and parameter.get("in") != "path":
        return True
    schema = parameter.get("schema", {})
    options = schema.get("anyOf", [schema])
    return any(set(o) - {"type", "title", "description", "default"} or o.get("type") not in ("string", "null")
               for o in options) or bool(set(schema) - {"anyOf", "type", "title", "description", "default"})


def _component(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """`model`'s JSON schema with its nested models moved into `schemas`."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    return schema


def _add_grader_union(doc: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Describe grader specs with the very models `graders.parse_grader` validates them with."""
    from pydantic import TypeAdapter

    from graders.spec import Grader

    schema = TypeAdapter(Grader).json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas["Grader"] = schema
    _replace_marks(doc)


def _replace_marks(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get(api.GRADER_SCHEMA_MARK):
            return {"$ref": "#/components/schemas/Grader"}
        for key, value in node.items():
            node[key] = _replace_marks(value)
    elif isinstance(node, list):
        return [_replace_marks(v) for v in node]
    return node
