"""`{{item.x}}` / `{{sample.output_json.a.0}}` templates over plain data: lookups only, no code."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

_MISSING = object()
_UNPARSED = object()
_VAR = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_SEGMENT = re.compile(r"""\.\s*([^.\[\](){}'"\s]+)|\[\s*(\d+)\s*\]|\[\s*"([^"]*)"\s*\]|\[\s*'([^']*)'\s*\]""")
_NAMESPACE = re.compile(r"\s*(item|sample)\b")
NAMESPACES = ("item", "sample")


class TemplateSyntaxError(ValueError):
    """A `{{ ... }}` that is not `namespace.path` with namespace item or sample."""


class TemplateVariableError(LookupError):
    """A variable the data does not have; `flag` names the OpenAI error flag to set."""

    def __init__(self, path: str, flag: str = "invalid_variable_error") -> None:
        self.path = path
        self.flag = flag
        super().__init__(f"template variable {{{{{path}}}}} is not available" + (
            " (the sample is not valid JSON)" if flag == "sample_parse_error" else ""))


class SampleContext:
    """One sample and its dataset item, with `output_json` parsed on first use."""

    __slots__ = ("output_text", "item", "_sample", "_json")

    _sample: dict[str, Any] | None
    _json: Any

    def __init__(self, sample: str | dict[str, Any], item: dict[str, Any] | None) -> None:
        if type(sample) is str:
            self._sample = None
            self.output_text = sample
            self._json = _UNPARSED
        elif isinstance(sample, dict):
            self._sample = sample
            text = sample.get("output_text", "")
            self.output_text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
            self._json = sample["output_json"] if "output_json" in sample else _UNPARSED
        else:
            self._sample = None
            self.output_text = "" if sample is None else str(sample)
            self._json = _UNPARSED
        self.item = item if item is not None else {}

    def output_json(self) -> Any:
        """The output parsed as JSON, or _MISSING when it does not parse."""
        if self._json is _UNPARSED:
            try:
                self._json = json.loads(self.output_text)
            except (ValueError, RecursionError):
                self._json = _MISSING
        return self._json

    def sample_dict(self) -> dict[str, Any]:
        """The `sample` namespace as OpenAI fills it (what python graders receive)."""
        parsed = self.output_json()
        out = dict(self._sample) if self._sample is not None else {}
        out["output_text"] = self.output_text
        out["output_json"] = None if parsed is _MISSING else parsed
        out.setdefault("output_tools", [])
        out.setdefault("choices", [])
        return out


class Variable:
    """A parsed `namespace.seg.seg` reference."""

    __slots__ = ("namespace", "segments", "text")

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        match = _NAMESPACE.match(text)
        if not match:
            raise TemplateSyntaxError(
                f"{{{{{self.text}}}}}: a template variable must start with item. or sample."
            )
        self.namespace = match.group(1)
        segments: list[str] = []
        pos = match.end()
        rest = text.rstrip()
        while pos < len(rest):
            seg = _SEGMENT.match(rest, pos)
            if not seg:
                raise TemplateSyntaxError(f"{{{{{self.text}}}}}: cannot parse the path at {rest[pos:]!r}")
            segments.append(next(g for g in seg.groups() if g is not None))
            pos = seg.end()
        if not segments and self.namespace == "item":
            raise TemplateSyntaxError(f"{{{{{self.text}}}}}: name a field, e.g. {{{{item.answer}}}}")
        self.segments = tuple(segments)

    def resolve(self, ctx: SampleContext) -> Any:
        """Look the variable up in ctx; raise TemplateVariableError when it is absent."""
        segments = self.segments
        if self.namespace == "item":
            value: Any = ctx.item
        else:
            if not segments:
                return ctx.sample_dict()
            head = segments[0]
            if head == "output_text":
                value = ctx.output_text
            elif head == "output_json":
                value = ctx.output_json()
                if value is _MISSING:
                    raise TemplateVariableError(self.text, "sample_parse_error")
            else:
                value = ctx.sample_dict().get(head, _MISSING)
                if value is _MISSING:
                    raise TemplateVariableError(self.text)
            segments = segments[1:]
        for seg in segments:
            value = _lookup(value, seg)
            if value is _MISSING:
                raise TemplateVariableError(self.text)
        return value


def _lookup(container: Any, key: str) -> Any:
    if isinstance(container, dict):
        return container.get(key, _MISSING)
    if isinstance(container, list) and key.lstrip("-").isdigit():
        index = int(key)
        return container[index] if -len(container) <= index < len(container) else _MISSING
    return _MISSING


def to_text(value: Any) -> str:
    """How a looked-up value appears in rendered text: strings as-is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class Template:
    """A compiled template string: literal text and variables, rendered against a SampleContext."""

    __slots__ = ("source", "parts", "single")

    def __init__(self, source: str) -> None:
        self.source = source
        parts: list[str | Variable] = []
        pos = 0
        for match in _VAR.finditer(source):
            if match.start() > pos:
                parts.append(source[pos:match.start()])
            parts.append(Variable(match.group(1)))
            pos = match.end()
        if pos < len(source):
            parts.append(source[pos:])
        self.parts = tuple(parts)
        only = self.parts[0] if len(self.parts) == 1 else None
        self.single: Variable | None = only if isinstance(only, Variable) else None

    def render(self, ctx: SampleContext) -> str:
        """The text with every variable substituted; raises TemplateVariableError."""
        if self.single is not None:
            return to_text(self.single.resolve(ctx))
        return "".join(p if isinstance(p, str) else to_text(p.resolve(ctx)) for p in self.parts)

    def getter(self) -> Callable[[SampleContext], str]:
        """A function rendering this template, specialised for the common one-variable forms."""
        single = self.single
        if not self.parts:
            return lambda ctx: ""
        if single is None:
            if len(self.parts) == 1:
                text = self.parts[0]
                return lambda ctx: text  # type: ignore[return-value]
            return self.render
        if single.namespace == "sample" and single.segments == ("output_text",):
            return _output_text
        if single.namespace == "item" and len(single.segments) == 1:
            key, path = single.segments[0], single.text

            def item_field(ctx: SampleContext) -> str:
                value = ctx.item.get(key, _MISSING) if type(ctx.item) is dict else _MISSING
                if type(value) is str:
                    return value
                if value is _MISSING:
                    raise TemplateVariableError(path)
                return to_text(value)

            return item_field
        return self.render

    def variables(self) -> Iterator[Variable]:
        return (p for p in self.parts if isinstance(p, Variable))


def _output_text(ctx: SampleContext) -> str:
    return ctx.output_text


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> Template:
    """Parse once, render many times (raises TemplateSyntaxError)."""
    return Template(source)


def render(source: str, ctx: SampleContext) -> str:
    """Render a template string (compiled and cached)."""
    return compile_template(source).render(ctx)


def template_strings(spec: Any) -> Iterator[tuple[str, str]]:
    """Every (field path, template string) in a grader spec, recursing into multi and judge messages."""
    kind = getattr(spec, "type", None)
    if kind in ("string_check", "text_similarity"):
        yield "input", spec.input
        yield "reference", spec.reference
    elif kind in ("score_model", "label_model"):
        for i, message in enumerate(spec.input):
            for path, text in _content_strings(message.content):
                yield f"input[{i}].content{path}", text
    elif kind == "multi":
        for name, sub in spec.graders.items():
            for path, text in template_strings(sub):
                yield f"graders.{name}.{path}", text


def _content_strings(content: Any) -> Iterator[tuple[str, str]]:
    if isinstance(content, str):
        yield "", content
    elif isinstance(content, list):
        for i, part in enumerate(content):
            for path, text in _content_strings(part):
                yield f"[{i}]{path}", text
    elif getattr(content, "type", None) in ("input_text", "output_text"):
        yield ".text", content.text
    elif getattr(content, "type", None) == "input_image":
        yield ".image_url", content.image_url


def template_item_fields(spec: Any) -> set[str]:
    """Top-level `item.*` fields a grader's templates use (python graders: none can be known)."""
    fields: set[str] = set()
    for _, text in template_strings(spec):
        try:
            template = compile_template(text)
        except TemplateSyntaxError:
            continue
        fields.update(v.segments[0] for v in template.variables() if v.namespace == "item" and v.segments)
    return fields


def template_errors(spec: Any) -> list[str]:
    """Syntax errors in every template of a spec, each prefixed with its field path."""
    errors = []
    for path, text in template_strings(spec):
        try:
            compile_template(text)
        except TemplateSyntaxError as exc:
            errors.append(f"{path}: {exc}")
    return errors
