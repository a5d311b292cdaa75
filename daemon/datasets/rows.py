"""What one row of an OpenAI RFT JSONL file must look like, and how its prompt reads as text."""

from __future__ import annotations

from typing import Any

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
LAST_ROLES = frozenset({"user", "developer"})
TEXT_PART_TYPES = frozenset({"text", "input_text"})
OTHER_PART_TYPES = frozenset({"image_url", "input_image", "input_audio", "file"})

# (code, field, message) -- one row's problems, before the caller adds file and line.
RowProblem = tuple[str, str | None, str]


def json_type(value: Any) -> str:
    """JSON's name for a Python value parsed by `json` (ints and floats are both numbers)."""
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    return "array"


def content_text(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a content-part list; None if malformed."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts = []
    for part in content:
        if not isinstance(part, dict):
            return None
        kind = part.get("type")
        if kind in TEXT_PART_TYPES:
            if not isinstance(part.get("text"), str):
                return None
            texts.append(part["text"])
        elif kind not in OTHER_PART_TYPES:
            return None
    return "".join(texts)


def _content_problem(i: int, message: dict[str, Any]) -> RowProblem | None:
    content = message.get("content")
    field = f"messages[{i}].content"
    if content is None:
        if message.get("role") == "assistant" and message.get("tool_calls"):
            return None
        return ("invalid_content", field, "content is missing (a string or a list of {type: \"text\", text} parts)")
    if content_text(content) is not None:
        return None
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                return ("invalid_content", f"{field}[{j}]", f"content part is a {json_type(part)}, not an object")
            kind = part.get("type")
            if kind in TEXT_PART_TYPES:
                return ("invalid_content", f"{field}[{j}].text",
                        f"text part's `text` must be a string, got {json_type(part.get('text'))}")
            if kind not in OTHER_PART_TYPES:
                return ("invalid_content", f"{field}[{j}].type", f"unknown content part type {kind!r} "
                        f"(expected one of {sorted(TEXT_PART_TYPES | OTHER_PART_TYPES)})")
    return ("invalid_content", field,
            f"content must be a string or a list of content parts, got {json_type(content)}")


def _tools_problem(tools: Any) -> RowProblem | None:
    if not isinstance(tools, list):
        return ("invalid_tools", "tools", f"`tools` must be a list, got {json_type(tools)}")
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            return ("invalid_tools", where, f"a tool must be an object, got {json_type(tool)}")
        if tool.get("type") != "function":
            return ("invalid_tools", f"{where}.type", f"tool type must be \"function\", got {tool.get('type')!r}")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            return ("invalid_tools", f"{where}.function", "a function tool needs a `function` object")
        if not isinstance(fn.get("name"), str) or not fn.get("name"):
            return ("invalid_tools", f"{where}.function.name", "a function tool needs a non-empty string `name`")
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            return ("invalid_tools", f"{where}.function.parameters",
                    f"`parameters` must be a JSON Schema object, got {json_type(fn['parameters'])}")
    return None


def _check_plain_row(obj: Any, roles: dict[str, int] | None) -> int | None:
    """The common case (string contents, valid roles, no tools) in one tight loop; None means look closer."""
    if type(obj) is not dict or "tools" in obj:
        return None
    messages = obj.get("messages")
    if type(messages) is not list or not messages:
        return None
    chars = 0
    seen = []
    for message in messages:
        if type(message) is not dict:
            return None
        role = message.get("role")
        content = message.get("content")
        if type(content) is not str or role not in ROLES:
            return None
        chars += len(content)
        seen.append(role)
    if seen[-1] not in LAST_ROLES:
        return None
    if roles is not None:
        for role in seen:
            roles[role] = roles.get(role, 0) + 1
    return chars


def check_row(obj: Any, roles: dict[str, int] | None = None) -> tuple[list[RowProblem], int]:
    """Problems of one parsed row, and its prompt length in characters (message text summed).

    `roles`, when given, counts the messages by role (for the file's stats).
    """
    fast = _check_plain_row(obj, roles)
    if fast is not None:
        return [], fast
    if not isinstance(obj, dict):
        return [("not_an_object", None, f"each line must be a JSON object, got {json_type(obj)}")], 0
    problems: list[RowProblem] = []
    chars = 0
    messages = obj.get("messages")
    if messages is None:
        problems.append(("missing_messages", "messages", "`messages` is missing"))
    elif not isinstance(messages, list):
        problems.append(("invalid_messages", "messages", f"`messages` must be a list, got {json_type(messages)}"))
    elif not messages:
        problems.append(("empty_messages", "messages", "`messages` is empty (it needs at least one user message)"))
    else:
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                problems.append(("invalid_message", f"messages[{i}]",
                                 f"a message must be an object, got {json_type(message)}"))
                continue
            role = message.get("role")
            if roles is not None and isinstance(role, str):
                roles[role] = roles.get(role, 0) + 1
            if role not in ROLES:
                problems.append(("invalid_role", f"messages[{i}].role",
                                 f"role {role!r} is not one of {', '.join(sorted(ROLES))}" if role is not None
                                 else "`role` is missing"))
            problem = _content_problem(i, message)
            if problem is not None:
                problems.append(problem)
            else:
                text = content_text(message.get("content"))
                chars += len(text) if text else 0
        last = messages[-1]
        if isinstance(last, dict) and last.get("role") in ROLES and last.get("role") not in LAST_ROLES:
            problems.append(("last_message_role", f"messages[{len(messages) - 1}].role",
                             f"the last message must be from user or developer (the model answers it), "
                             f"not {last.get('role')}"))
    if "tools" in obj:
        problem = _tools_problem(obj["tools"])
        if problem is not None:
            problems.append(problem)
    return problems, chars


def prompt_text(obj: dict[str, Any]) -> str:
    """The rendered prompt (`role: text` per message) that overlap checks compare."""
    out = []
    for message in obj.get("messages") or ():
        if isinstance(message, dict):
            out.append(f"{message.get('role')}: {content_text(message.get('content')) or ''}")
    return "\n".join(out)


def normalize_prompt(text: str) -> str:
    """Case and whitespace do not make a prompt new."""
    return " ".join(text.lower().split())
