"""Reading the model's tool calls (Hermes / Qwen2.5 format) and checking them against the row's tool schemas.

The model calls a tool by writing, anywhere in its turn, one block per call (several blocks = parallel calls):

    <tool_call>
    {"name": "add", "arguments": {"a": 1, "b": 2}}
    </tool_call>

This is the format Qwen2.5's chat template asks for and the one `builtin:tiny-tools` is trained to emit.
TRL 1.16's `parse_response` reads it only for tokenizers whose template it recognises, and falls back to
plain text when a block is malformed (the call silently becomes a "final answer"; trl#4881, trl#4708).
Here a malformed block is a call with an `error` the model is shown, so it can learn from it; nothing in a
model's output can raise. Standard library only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|\Z)", re.DOTALL)
MAX_ARGUMENT_CHARS = 16_000


@dataclass
class ParsedCall:
    """One `<tool_call>` block: its name and arguments, or why it cannot run (`error`)."""

    name: str
    arguments: Any  # a dict when it parsed; the raw text otherwise
    error: str | None = None


@dataclass
class ParsedTurn:
    """A model turn split into its text (outside the blocks) and its calls, in order."""

    content: str
    calls: list[ParsedCall]


def parse_turn(text: str) -> ParsedTurn:
    """The calls in one model turn; no block at all means the turn is a final answer."""
    calls: list[ParsedCall] = []
    for match in _BLOCK.finditer(text):
        closed = match.group(0).endswith(CLOSE)
        calls.append(_parse_block(match.group(1), closed))
    content = _BLOCK.sub("", text).strip()
    return ParsedTurn(content=content, calls=calls)


def _parse_block(body: str, closed: bool) -> ParsedCall:
    raw = body.strip()
    if not closed:
        return ParsedCall(name=_guess_name(raw), arguments=raw,
                          error=f"malformed tool call: {OPEN} is never closed by {CLOSE}")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        return ParsedCall(name=_guess_name(raw), arguments=raw,
                          error=f"malformed tool call: not JSON ({e.msg} at character {e.pos})")
    if not isinstance(data, dict):
        return ParsedCall(name="", arguments=raw,
                          error='malformed tool call: expected {"name": ..., "arguments": {...}}')
    name = data.get("name")
    if not isinstance(name, str) or not name:
        return ParsedCall(name="", arguments=data.get("arguments"), error='malformed tool call: no "name"')
    arguments = data.get("arguments", {})
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):  # some models send the arguments as a JSON string
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return ParsedCall(name=name, arguments=arguments,
                              error='malformed tool call: "arguments" is a string that is not a JSON object')
    if not isinstance(arguments, dict):
        return ParsedCall(name=name, arguments=arguments,
                          error=f'malformed tool call: "arguments" must be an object, got {type(arguments).__name__}')
    if len(json.dumps(arguments, ensure_ascii=False)) > MAX_ARGUMENT_CHARS:
        return ParsedCall(name=name, arguments={}, error=f"arguments over {MAX_ARGUMENT_CHARS} characters")
    return ParsedCall(name=name, arguments=arguments)


def _guess_name(raw: str) -> str:
    """The tool name from a block that is not JSON, when one is recognisable (for the record only)."""
    m = re.search(r'"name"\s*:\s*"([A-Za-z0-9_-]{1,64})"', raw)
    return m.group(1) if m else ""


# ------------------------------------------------------------------------------------------ schemas


def tool_schemas(tools: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """name -> JSON schema of its parameters, from a row's `tools` (chat-completions or responses shape)."""
    out: dict[str, dict[str, Any]] = {}
    for tool in tools or []:
        if not isinstance(tool, dict):
            continue
        inner = tool.get("function")
        fn: dict[str, Any] = inner if isinstance(inner, dict) else tool
        name = fn.get("name")
        if isinstance(name, str) and name:
            params = fn.get("parameters")
            out[name] = params if isinstance(params, dict) else {}
    return out


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "array": (list,),
    "object": (dict,), "null": (type(None),),
}


def argument_problems(arguments: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """What is wrong with a call's arguments by its parameters schema (required, types, enums, unknown keys).

    A subset of JSON Schema -- what function tools use in practice -- checked at the top level and one level
    into nested objects; an empty schema accepts anything.
    """
    return _check_object(arguments, schema, "")


def _check_object(value: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    found = schema.get("properties")
    props: dict[str, Any] = found if isinstance(found, dict) else {}
    for key in schema.get("required") or []:
        if isinstance(key, str) and key not in value:
            problems.append(f"missing required argument '{where}{key}'")
    if schema.get("additionalProperties") is False:
        problems += [f"unknown argument '{where}{k}' (allowed: {', '.join(props) or 'none'})"
                     for k in value if k not in props]
    for key, sub in props.items():
        if key in value and isinstance(sub, dict):
            problems += _check_value(value[key], sub, f"{where}{key}")
    return problems


def _check_value(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else [k for k in kind or [] if isinstance(k, str)]
    if not isinstance(kind, (str, list)):
        kinds = []
    if kinds and not any(_is(value, k) for k in kinds):
        return [f"argument '{where}' must be {' or '.join(kinds)}, got {json.dumps(value)[:60]}"]
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        return [f"argument '{where}' must be one of {json.dumps(enum)[:120]}, got {json.dumps(value)[:60]}"]
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict) and "." not in where:
        return _check_object(value, schema, f"{where}.")
    return []


def _is(value: Any, kind: str) -> bool:
    types = _TYPES.get(kind)
    if types is None:
        return True  # a type we do not know: the tool decides
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, types)
