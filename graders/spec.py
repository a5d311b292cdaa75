"""Grader specs: pydantic models that accept OpenAI's grader JSON exactly (a union on `type`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from graders.errors import FieldPath, GraderSpecError

#: OpenAI's limit on a python grader's source.
MAX_PYTHON_SOURCE_BYTES = 256 * 1024

# Numbers in a spec are JSON numbers: `"0.5"` or `true` is refused (as the published schema says), not coerced.
# (StrictFloat still takes an integer: `range: [0, 10]`.)

EvaluationMetric = Literal[
    "cosine", "fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l"
]


class _Spec(BaseModel):
    # strict: JSON types exactly as the schema declares them (`false` is not a number, "1" is not an int)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StringCheckGrader(_Spec):
    """Compare `input` with `reference`: eq, ne, like (contains), ilike (contains, case-insensitive)."""

    type: Literal["string_check"]
    name: str
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


class TextSimilarityGrader(_Spec):
    """Score `input` against `reference` with a similarity metric in [0, 1]."""

    type: Literal["text_similarity"]
    name: str
    input: str
    reference: str
    evaluation_metric: EvaluationMetric
    pass_threshold: StrictFloat | None = None


class PythonGrader(_Spec):
    """Run `grade(sample, item) -> float` from `source` in the sandbox."""

    type: Literal["python"]
    name: str
    source: str
    image_tag: str | None = None

    @field_validator("source")
    @classmethod
    def _source_size(cls, source: str) -> str:
        size = len(source.encode("utf-8"))
        if size > MAX_PYTHON_SOURCE_BYTES:
            raise ValueError(f"source is {size} bytes; the limit is {MAX_PYTHON_SOURCE_BYTES} (256 kB)")
        return source


class InputText(_Spec):
    type: Literal["input_text"]
    text: str


class OutputText(_Spec):
    type: Literal["output_text"]
    text: str


class InputImage(_Spec):
    type: Literal["input_image"]
    image_url: str
    detail: str | None = None


class InputAudioData(_Spec):
    data: str
    format: str


class InputAudio(_Spec):
    type: Literal["input_audio"]
    input_audio: InputAudioData


ContentPart = Annotated[InputText | OutputText | InputImage | InputAudio, Field(discriminator="type")]
MessageContent = str | ContentPart | list[str | ContentPart]


class Message(_Spec):
    """One judge-prompt message; text in `content` may hold templates."""

    role: Literal["user", "assistant", "system", "developer"]
    content: MessageContent
    type: Literal["message"] | None = None


class SamplingParams(BaseModel):
    """Judge sampling parameters (OpenAI's names; extra keys pass through to the endpoint)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    max_completions_tokens: StrictInt | None = None
    reasoning_effort: str | None = None
    seed: StrictInt | None = None
    temperature: StrictFloat | None = None
    top_p: StrictFloat | None = None


class ScoreModelGrader(_Spec):
    """A judge model scores the sample within `range`."""

    type: Literal["score_model"]
    name: str
    model: str
    input: list[Message]
    range: list[StrictFloat] | None = None
    sampling_params: SamplingParams | None = None
    pass_threshold: StrictFloat | None = None

    @field_validator("range")
    @classmethod
    def _range_pair(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (len(value) != 2 or not value[0] < value[1]):
            raise ValueError("range must be two numbers [low, high] with low < high")
        return value

    @property
    def score_range(self) -> tuple[float, float]:
        """The declared range, defaulting to OpenAI's [0, 1]."""
        return (self.range[0], self.range[1]) if self.range else (0.0, 1.0)


class LabelModelGrader(_Spec):
    """A judge model picks one of `labels`; the reward is 1 for a passing label, else 0."""

    type: Literal["label_model"]
    name: str
    model: str
    input: list[Message]
    labels: list[str] = Field(min_length=1)
    passing_labels: list[str] = Field(min_length=1)
    sampling_params: SamplingParams | None = None

    @model_validator(mode="after")
    def _passing_subset(self) -> LabelModelGrader:
        unknown = [label for label in self.passing_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"passing_labels {unknown} are not among labels {self.labels}")
        return self


class EndpointGrader(_Spec):
    """Agent RFT: the user's HTTP endpoint scores each sample (as in OpenAI's Agent RFT).

    The grading process POSTs `{"sample", "item"}` (the sample as python graders see it: output_text,
    output_json, and for tool episodes output_messages, tool_calls, stop_reason) to `url`; the answer is a JSON
    number or `{"reward": number}` in [0, 1]. 5xx, timeouts and refused connections are retried with backoff.
    Called only at `url`, never from the sandbox.
    """

    type: Literal["endpoint"]
    name: str
    url: str = Field(min_length=1, max_length=2048)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_retries: int = Field(default=3, ge=0, le=10)
    headers: dict[str, str] = {}

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an absolute http:// or https:// URL with a host, got {url!r}")
        return url


SubGrader = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader | EndpointGrader,
    Field(discriminator="type"),
]


class MultiGrader(_Spec):
    """Named sub-graders combined by the `calculate_output` formula."""

    type: Literal["multi"]
    name: str
    graders: dict[str, SubGrader] = Field(min_length=1)
    calculate_output: str


Grader = Annotated[
    StringCheckGrader | TextSimilarityGrader | PythonGrader | ScoreModelGrader | LabelModelGrader | MultiGrader
    | EndpointGrader,
    Field(discriminator="type"),
]

GRADER_TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model", "multi", "endpoint")

_GRADER_ADAPTER: TypeAdapter[Any] = TypeAdapter(Grader)


def parse_grader(obj: Any) -> Grader:
    """Validate a grader spec (OpenAI JSON as a dict); raise GraderSpecError naming the bad field."""
    if isinstance(obj, (StringCheckGrader, TextSimilarityGrader, PythonGrader, ScoreModelGrader,
                        LabelModelGrader, MultiGrader, EndpointGrader)):
        return obj
    if not isinstance(obj, dict):
        raise GraderSpecError(f"a grader must be a JSON object, got {type(obj).__name__}")
    try:
        spec: Grader = _GRADER_ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise _spec_error(exc) from None
    return spec


def _spec_error(exc: ValidationError) -> GraderSpecError:
    """Turn pydantic's first errors into a message naming each field path (tag names left out)."""
    messages = []
    fields: list[FieldPath] = []
    for error in exc.errors()[:5]:
        loc = _field_path(error["loc"])
        fields.append(loc)
        messages.append(f"{format_field_path(loc) or '<grader>'}: {error['msg']}")
    extra = len(exc.errors()) - len(messages)
    text = "; ".join(messages) + (f" (and {extra} more)" if extra > 0 else "")
    return GraderSpecError(f"invalid grader spec: {text}", path="", fields=tuple(fields))


def _field_path(loc: tuple[Any, ...]) -> FieldPath:
    """pydantic's error location without the union tags it inserts (e.g. "string_check", "str")."""
    parts: list[str | int] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(part)
        elif part in GRADER_TYPES or part in ("input_text", "output_text", "input_image", "input_audio"):
            continue
        elif part == "str" or str(part).startswith(("tagged-union[", "list[", "union[")):
            continue
        else:
            parts.append(str(part))
    return tuple(parts)


def format_field_path(path: FieldPath) -> str:
    """`graders.a.input[0].content`: how messages name a field."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


def needs_heavy_libraries(grader: Any) -> bool:
    """True when grading loads torch: `cosine` similarity (an embedding model) or a local `hf:` judge.

    The one place that decides it: the daemon grades such specs in a helper process so it never imports
    torch itself. Takes a spec or its JSON dict (an invalid dict raises GraderSpecError).
    """
    from graders.impl.judges import judge_target

    spec = parse_grader(grader)
    if isinstance(spec, TextSimilarityGrader):
        return spec.evaluation_metric == "cosine"
    if isinstance(spec, (ScoreModelGrader, LabelModelGrader)):
        return judge_target(spec.model, {})[0] == "hf"
    if isinstance(spec, MultiGrader):
        return any(needs_heavy_libraries(sub) for sub in spec.graders.values())
    return False
