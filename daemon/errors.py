"""OpenAI-style API errors: `{"error": {"message", "type", "param", "code"}}` with the right 4xx."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the daemon answers with; `status` is the HTTP status code."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def not_found(kind: str, ident: str, param: str | None = None) -> ApiError:
    code = kind.replace(" ", "_").replace("-", "_") + "_not_found"
    return ApiError(404, f"No {kind} with id '{ident}'.", param=param, code=code)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def conflict(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(409, message, param=param, code=code)
