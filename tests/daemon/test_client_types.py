"""The client's methods say what they return: API models, never `Any` (mypy checks the callers against these).

mypy --strict accepts an explicit `-> Any`, so this test is what keeps a method from sliding back to it.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from daemon.client import AsyncClient, Client, _Api, _Endpoint, _Request

ENDPOINTS = {name: value for name, value in vars(_Api).items() if isinstance(value, _Endpoint)}


def _mentions_any(tp: object) -> bool:
    """True if `tp` is Any, or Any is the whole of one of its union members (dict[str, Any] is fine)."""
    if tp is Any:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_mentions_any(a) for a in typing.get_args(tp))
    return False


def test_every_endpoint_is_listed() -> None:
    """The endpoints are found (so the parametrized checks below check something)."""
    assert {"health", "create_job", "get_job", "list_jobs", "cancel_job", "pause_job", "metrics", "test_grader",
            "find_file", "save_grader_file"} <= set(ENDPOINTS)


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_endpoint_returns_a_typed_request(name: str) -> None:
    build = ENDPOINTS[name]._build
    returned = typing.get_type_hints(build)["return"]
    assert typing.get_origin(returned) is _Request, f"{name} returns {returned}"
    (answer,) = typing.get_args(returned)
    assert not _mentions_any(answer), f"{name} answers {answer}"
    if name != "shutdown":  # the one route without a model: {"ok": true}
        members = typing.get_args(answer) or (answer,)
        models = [m for m in members if m is not type(None)]
        assert models and all(issubclass(typing.get_origin(m) or m, BaseModel) for m in models), \
            f"{name} answers {answer}, not an API model"


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_methods_of_the_clients_are_annotated(cls: type[Any]) -> None:
    for name, member in vars(cls).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        hints = typing.get_type_hints(member)
        assert "return" in hints and not _mentions_any(hints["return"]), f"{cls.__name__}.{name}"
