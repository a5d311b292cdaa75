"""A job's tool runtimes (`method.reinforcement.tools`, docs/agent-rft.md) from a JSON or YAML file or inline JSON.

Shared by `rft-tui jobs create/preflight --tools` and the New-job form; errors name the file, the line (for
text that does not parse) or the field (`add.url: ...`). No torch, only the wire schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daemon import api


class ToolsTextError(ValueError):
    """The tools spec does not parse or does not fit; the message says where."""


def tools_from_text(text: str, source: str = "tools") -> dict[str, Any]:
    """{name: runtime dict}, checked against the API's tool runtime shapes."""
    data = _load(text, source)
    try:
        parsed = api.parse_tool_runtimes(data)
    except ValueError as e:
        raise ToolsTextError(f"{source}: {e}") from None
    return {name: runtime.model_dump() for name, runtime in parsed.items()}


def tools_from_arg(value: str) -> dict[str, Any]:
    """Inline JSON (starting with `{`) or the path of a .json/.yaml file."""
    value = value.strip()
    if value.startswith("{"):
        return tools_from_text(value, "tools")
    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ToolsTextError(f"cannot read {path}: {e}") from None
    return tools_from_text(text, str(path))


def _load(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        json_error = f"{source}: line {e.lineno}, column {e.colno}: {e.msg}"
    if text.lstrip().startswith(("{", "[")) or source == "tools":
        raise ToolsTextError(json_error)
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ToolsTextError(f"{source}: {where}{getattr(e, 'problem', None) or e}") from None
