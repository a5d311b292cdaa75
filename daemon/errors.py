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


def store_busy(path: str, waited_s: float) -> ApiError:
    """503: another process held the database lock longer than the daemon waits for it."""
    return ApiError(503, f"The store ({path}) is busy: another process has held its lock for more than "
                    f"{waited_s:g} s. Nothing was changed; retry when it is released.",
                    type="server_error", code="store_busy")


def free_bytes(path: str) -> int | None:
    """Free space (for this user) on the file system holding `path`, or None when it cannot be told."""
    import os

    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def human_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def disk_full_message(path: str) -> str:
    """One sentence naming the store and its free space (shared by the API error and a failed job)."""
    return (f"The disk holding the store ({path}) is full ({human_bytes(free_bytes(path))} free); "
            "nothing was half-written. Free some space and retry.")


def disk_full(path: str) -> ApiError:
    """507: ENOSPC/EDQUOT/SQLITE_FULL while writing into the store."""
    return ApiError(507, disk_full_message(path), type="server_error", code="disk_full")
