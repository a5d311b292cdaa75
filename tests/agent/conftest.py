"""Agent-RFT fixtures: a cached tiny model that calls its `add` tool (tests/support/tool_model.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import _model_cache_dir
from tests.support.tool_model import tool_caller_model


@pytest.fixture(scope="session")
def tool_caller() -> Path:
    """A local model directory: answers "What is A+B?" by calling add(a=1, b=2), then writing the sum."""
    return tool_caller_model(_model_cache_dir())
