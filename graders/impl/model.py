"""score_model and label_model: render the judge prompt, ask the judge, parse its structured answer."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from typing import Any

from graders.impl.base import Engine, Runtime
from graders.impl.judges import JudgeReply, JudgeServerError
from graders.result import GraderResult
from graders.spec import LabelModelGrader, Message, ScoreModelGrader
from graders.templates import SampleContext, TemplateSyntaxError, TemplateVariableError, render

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_JUDGE_CONCURRENCY = 8


class JudgeParseError(ValueError):
    """The judge's answer is not a score/label in the expected form."""


def parse_score(text: str) -> float:
    """A score from `{"result": x}`, `{"score": x}`, a bare number, or a JSON object inside the text."""
    stripped = _FENCE.sub("", text.strip()).strip()
    for candidate in (stripped, *_json_objects(stripped)):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            for key in ("result", "score", "grade", "reward"):
                if key in value:
                    value = value[key]
                    break
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    if _NUMBER.fullmatch(stripped):
        return float(stripped)
    raise JudgeParseError(f"cannot find a score in the judge's answer: {text[:300]!r}")


def parse_label(text: str, labels: Sequence[str]) -> str:
    """A label from `{"result": label}`/`{"label": label}` or the bare label text (case-insensitive)."""
    stripped = _FENCE.sub("", text.strip()).strip()
    candidates = [stripped]
    for blob in (stripped, *_json_objects(stripped)):
        try:
            value = json.loads(blob)
        except ValueError:
            continue
        if isinstance(value, dict):
            value = next((value[k] for k in ("result", "label", "answer") if k in value), None)
        if isinstance(value, str):
            candidates.insert(0, value)
    by_fold = {label.casefold(): label for label in labels}
    for candidate in candidates:
        key = candidate.strip().strip("\"'`.!*").strip().casefold()
        if key in by_fold:
            return by_fold[key]
    raise JudgeParseError(f"the judge's answer is not one of {list(labels)}: {text[:300]!r}")


def _json_objects(text: str) -> list[str]:
    start = text.find("{")
    end = text.rfind("}")
    return [text[start:end + 1]] if 0 <= start < end else []


def render_messages(messages: Sequence[Message], ctx: SampleContext) -> list[dict[str, Any]]:
    """Chat-completions messages with every template rendered (raises TemplateVariableError)."""
    out = []
    for message in messages:
        role = message.role
        content = _render_content(message.content, ctx)
        out.append({"role": role, "content": content})
    return out


def _render_content(content: Any, ctx: SampleContext) -> Any:
    if isinstance(content, str):
        return render(content, ctx)
    if isinstance(content, list):
        parts = [_render_part(p, ctx) for p in content]
        if all(p["type"] == "text" for p in parts):
            return "\n".join(p["text"] for p in parts)
        return parts
    part = _render_part(content, ctx)
    return part["text"] if part["type"] == "text" else [part]


def _render_part(part: Any, ctx: SampleContext) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": render(part, ctx)}
    if part.type in ("input_text", "output_text"):
        return {"type": "text", "text": render(part.text, ctx)}
    if part.type == "input_image":
        url: dict[str, Any] = {"url": render(part.image_url, ctx)}
        if part.detail:
            url["detail"] = part.detail
        return {"type": "image_url", "image_url": url}
    return {"type": "input_audio", "input_audio": part.input_audio.model_dump()}


class _ModelEngine(Engine):
    def __init__(self, spec: ScoreModelGrader | LabelModelGrader) -> None:
        self.name = spec.name
        self.model = spec.model
        self.messages = spec.input
        self.sampling = spec.sampling_params.model_dump(exclude_none=True) if spec.sampling_params else {}

    def instruction(self) -> str:
        raise NotImplementedError

    def interpret(self, reply: JudgeReply, result: GraderResult) -> None:
        raise NotImplementedError

    def grade_batch(self, contexts: Sequence[SampleContext], runtime: Runtime) -> list[GraderResult]:
        return runtime.map(lambda ctx: self._grade_one(ctx, runtime), list(contexts), concurrency=_JUDGE_CONCURRENCY)

    def _grade_one(self, ctx: SampleContext, runtime: Runtime) -> GraderResult:
        start = time.perf_counter()
        result = GraderResult(0.0, self.name, self.type)
        try:
            messages = render_messages(self.messages, ctx)
        except TemplateVariableError as exc:
            result.flag(exc.flag, str(exc))
            return result
        except TemplateSyntaxError as exc:
            result.flag("invalid_variable_error", str(exc))
            return result
        messages.append({"role": "system", "content": self.instruction()})
        try:
            reply = runtime.judge(self.model).complete(self.model, messages, self.sampling)
        except JudgeServerError as exc:
            result.flag("model_grader_server_error", str(exc))
            result.execution_time = time.perf_counter() - start
            return result
        except Exception as exc:  # noqa: BLE001 - nothing escapes a grader
            result.flag("model_grader_server_error", f"{type(exc).__name__}: {exc}")
            return result
        result.sampled_model_name = reply.model
        if reply.usage:
            result.token_usage = reply.usage.get("total_tokens")
            result.model_grader_token_usage_per_model = {reply.model: dict(reply.usage)}
        if reply.refusal:
            result.flag("model_grader_refusal_error")
            result.add_detail("other_error_details", reply.refusal[:2000])
        else:
            try:
                self.interpret(reply, result)
            except JudgeParseError as exc:
                result.flag("model_grader_parse_error")
                result.add_detail("other_error_details", str(exc))
        result.execution_time = time.perf_counter() - start
        return result


class ScoreModelEngine(_ModelEngine):
    """Reward = the judge's score clamped to the grader's range (default [0, 1])."""

    type = "score_model"

    def __init__(self, spec: ScoreModelGrader) -> None:
        super().__init__(spec)
        self.low, self.high = spec.score_range

    def instruction(self) -> str:
        return (f'Reply with only a JSON object {{"result": <score>}} where <score> is a number from '
                f"{self.low:g} to {self.high:g}.")

    def interpret(self, reply: JudgeReply, result: GraderResult) -> None:
        score = parse_score(reply.text)
        result.reward = min(self.high, max(self.low, score))
        result.scores = {"result": result.reward}


class LabelModelEngine(_ModelEngine):
    """Reward = 1 when the judge's label is a passing label, else 0."""

    type = "label_model"

    def __init__(self, spec: LabelModelGrader) -> None:
        super().__init__(spec)
        self.labels = list(spec.labels)
        self.passing = set(spec.passing_labels)

    def instruction(self) -> str:
        options = ", ".join(json.dumps(label) for label in self.labels)
        return f'Reply with only a JSON object {{"result": <label>}} where <label> is one of: {options}.'

    def interpret(self, reply: JudgeReply, result: GraderResult) -> None:
        label = parse_label(reply.text, self.labels)
        result.reward = 1.0 if label in self.passing else 0.0
        result.scores = {"label": label, "passed": label in self.passing}
