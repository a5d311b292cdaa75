"""The one wire schema: every request and response the daemon speaks.

Shapes follow the `openai` Python SDK's types (fine_tuning.job, fine_tuning.job.event,
fine_tuning.job.checkpoint, file, list objects) so the official SDK parses them; the extensions
(metrics, validation rows, samples, file rows, validation reports, stream events) live here too.
Imports only pydantic and the standard library, so the TUI and CLI can import it without torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

API_VERSION = "1"

# --------------------------------------------------------------------------------------------
# Common


def _members(ann: Any) -> list[Any]:
    """The types a field annotation admits, flattened (Annotated and unions unwrapped)."""
    if get_origin(ann) is Annotated:
        return _members(get_args(ann)[0])
    if get_origin(ann) in (Union, UnionType):
        return [m for a in get_args(ann) for m in _members(a)]
    return [ann]


def _accepts_natively(member: Any, value: Any) -> bool:
    """Whether `member` takes this JSON scalar as it is, without pydantic's lax coercion."""
    if get_origin(member) is Literal:
        return any(type(v) is type(value) and v == value for v in get_args(member))
    if member is Any or member is object:
        return True
    if isinstance(value, bool):
        return member is bool
    if isinstance(value, int):
        return member in (int, float)
    if isinstance(value, float):
        return member is float
    if isinstance(value, str):
        return member is str or (isinstance(member, type) and issubclass(member, (str, Enum)))
    return True


def json_type_confusion(ann: Any, value: Any) -> str | None:
    """Why `value` only fits `ann` through a bool <-> number/string coercion (None when it fits as declared).

    Pydantic's lax mode takes `false` for a number and `0` or "yes" for a bool; the OpenAPI schema says
    otherwise, and a client sending them is almost always confused, so requests say so instead (schemathesis
    ST201). Other coercions ("1e-4" from a YAML file for a float) stay lax on purpose.
    """
    members = _members(ann)
    if any(get_origin(m) in (list, tuple, set, frozenset) for m in members) and isinstance(value, list):
        inner = [a for m in members if get_origin(m) in (list, tuple, set, frozenset) for a in get_args(m)
                 if a is not Ellipsis]
        for item in value:
            if inner and (why := json_type_confusion(Union[tuple(inner)], item)):  # noqa: UP007 - built at run time
                return why
        return None
    if any(get_origin(m) is dict for m in members) and isinstance(value, dict):
        inner = [get_args(m)[1] for m in members if get_origin(m) is dict and len(get_args(m)) == 2]
        for item in value.values():
            if inner and (why := json_type_confusion(Union[tuple(inner)], item)):  # noqa: UP007 - built at run time
                return why
        return None
    if not isinstance(value, (bool, int, float, str)) or any(_accepts_natively(m, value) for m in members):
        return None
    if isinstance(value, bool) and any(m in (int, float) for m in members):
        return "a boolean is not a number"
    if bool in members:
        return f"{value!r} is not a boolean: " \
               "use true or false"
    return None


#: The error type JsonTyped raises (its ctx names the field; daemon.server.summarize_validation_errors uses it).
JSON_TYPE_ERROR = "json_type"


class JsonTyped(BaseModel):
    """Mixin: JSON booleans and numbers are not interchangeable in request fields (see json_type_confusion)."""

    @model_validator(mode="before")
    @classmethod
    def _json_types_as_declared(cls, data: Any) -> Any:
        # a model validator, not a field one: pydantic refuses before-validators on discriminator fields
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                key = field.alias if field.alias in data else name
                if key in data and (why := json_type_confusion(field.annotation, data[key])):
                    # ctx.field: the daemon's error summary adds it to the location (param names the field)
                    raise PydanticCustomError(JSON_TYPE_ERROR, "{field}: {why}", {"field": key, "why": why})
        return data


class WireModel(BaseModel):
    """Base for every wire object: unknown fields are kept (forward compatible readers)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class StrictRequest(JsonTyped):
    """Base for request bodies: unknown fields are an error the caller sees, not a silent drop."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    """OpenAI's error object: what went wrong, its kind, the request field it concerns, a stable code."""

    message: str
    type: str = Field(default="invalid_request_error",
                      description="invalid_request_error | authentication_error | server_error")
    param: str | None = Field(default=None, description="the request field at fault, dotted (method.x.y)")
    code: str | None = Field(default=None, description="stable machine-readable reason, e.g. file_not_found")


class ErrorResponse(BaseModel):
    """The body of every 4xx/5xx answer, as OpenAI sends it (request validation errors included, as 400)."""

    error: ErrorDetail


#: Marks a grader spec in request schemas; /openapi.json swaps each one for `components/schemas/Grader`.
GRADER_SCHEMA_MARK = "x-rft-grader-spec"
#: A grader spec on the wire: a plain dict here (this module cannot import `graders`, which validates it);
#: /openapi.json describes it with the graders package's own discriminated union (daemon/routes/__init__.py).
GraderSpec = Annotated[dict[str, Any], WithJsonSchema(
    {"type": "object", "description": "an OpenAI grader spec (string_check, text_similarity, python, "
     "score_model, label_model, multi or endpoint)", GRADER_SCHEMA_MARK: True}, mode="validation")]


#: Integers the store can compare (SQLite's 64-bit INTEGER); query numbers are declared within them.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

T = TypeVar("T")


class ListObject(BaseModel, Generic[T]):
    """OpenAI's list envelope (`object: "list"`, `data`, `has_more`)."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


class Health(WireModel):
    status: Literal["ok"] = "ok"
    version: str
    api_version: str = API_VERSION
    pid: int
    uptime_s: float
    started_at: int
    home: str
    socket: str | None = None
    running_jobs: int = 0
    queued_jobs: int = 0
    sandbox: str | None = None  # python graders: "bubblewrap" | "off" | "unavailable: <reason and fix>"
    store: Literal["ok", "busy"] = "ok"  # "busy": another process holds the database lock; writes may 503


class DaemonStatusFile(WireModel):
    """Contents of `$RFT_HOME/run/daemon.json`, written owner-only by the daemon."""

    pid: int
    socket: str
    version: str
    started_at: int
    tcp: str | None = None
    home: str | None = None
    pid_start_time: float | None = None


# --------------------------------------------------------------------------------------------
# Files


class FilePurpose(str, Enum):
    fine_tune = "fine-tune"
    fine_tune_results = "fine-tune-results"
    evals = "evals"
    user_data = "user_data"


#: The purposes a request may name (kept a plain string once validated, as the store keeps it).
FilePurposeName = Literal["fine-tune", "fine-tune-results", "evals", "user_data"]
#: Longest local path the daemon accepts (Linux PATH_MAX).
MAX_PATH_CHARS = 4096


class FileObject(WireModel):
    """OpenAI `file` object plus local extensions (sha256, rows, path of the stored copy)."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str = "fine-tune"
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None
    expires_at: int | None = None
    sha256: str | None = None
    rows: int | None = None
    source_path: str | None = None


class FileImportRequest(StrictRequest):
    path: str = Field(min_length=1, max_length=MAX_PATH_CHARS, description="a local path; `~` is this user's home")
    purpose: FilePurposeName = "fine-tune"
    force: bool = Field(default=False, description="keep a file with errors (jobs still refuse it)")


class FileRow(WireModel):
    """One row of a JSONL file, as browsed (1-based line number, the parsed object or the error)."""

    line: int
    data: dict[str, Any] | None = None
    raw: str | None = None
    error: str | None = None


class FileRowsPage(WireModel):
    object: Literal["file.rows"] = "file.rows"
    file_id: str
    offset: int
    limit: int
    total_rows: int
    data: list[FileRow]


class FileValidateRequest(StrictRequest):
    """Exactly one of `file_id` (a stored file) or `path` (a local file)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["file_id"], "properties": {"file_id": {"type": "string"}}},
        {"required": ["path"], "properties": {"path": {"type": "string"}}},
    ]})

    file_id: str | None = Field(default=None, min_length=1)
    path: str | None = Field(default=None, min_length=1, max_length=MAX_PATH_CHARS)
    against: str | None = Field(default=None, description="file id or path of the validation file")
    grader: GraderSpec | None = None
    tokenizer_model: str | None = None
    max_problems: int = Field(default=200, ge=1, le=100_000)


class Problem(WireModel):
    """One problem in a dataset file: where (file, line, field) and why."""

    severity: Literal["error", "warning"] = "error"
    file: str
    line: int | None = None
    field: str | None = None
    code: str
    message: str


class OverlapPair(WireModel):
    valid_line: int
    train_line: int
    similarity: float = 1.0
    prompt: str | None = None


class FieldStats(WireModel):
    name: str
    types: dict[str, int]
    present: int
    top_values: list[tuple[str, int]] | None = None


class FileStats(WireModel):
    rows: int = 0
    bytes: int = 0
    fields: list[FieldStats] = []
    prompt_chars: dict[str, float] = {}
    prompt_tokens: dict[str, float] | None = None
    message_counts: dict[str, int] = {}


class OverlapReport(WireModel):
    exact: int = 0
    near: int = 0
    exact_pairs: list[OverlapPair] = []
    near_pairs: list[OverlapPair] = []
    threshold: float = 0.8


class ValidationReport(WireModel):
    object: Literal["file.validation"] = "file.validation"
    ok: bool
    file: str
    errors: int = 0
    warnings: int = 0
    problems: list[Problem] = []
    problems_truncated: bool = False
    stats: FileStats = FileStats()
    against: ValidationReport | None = None
    overlap: OverlapReport | None = None


# --------------------------------------------------------------------------------------------
# Jobs


class JobStatus(str, Enum):
    validating_files = "validating_files"
    queued = "queued"
    running = "running"
    paused = "paused"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    def is_terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


_STATUS_NAMES = "|".join(s.value for s in JobStatus)
#: `GET /v1/fine_tuning/jobs?status=`: job statuses separated by commas (spaces around them allowed).
JOB_STATUS_FILTER_PATTERN = rf"^ *(?:(?:{_STATUS_NAMES}) *)?(?:, *(?:(?:{_STATUS_NAMES}) *)?)*$"

# Allowed transitions of the job state machine; every one is recorded as an event.
JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.validating_files: frozenset({JobStatus.queued, JobStatus.failed, JobStatus.cancelled}),
    JobStatus.queued: frozenset({JobStatus.running, JobStatus.cancelled, JobStatus.failed, JobStatus.paused}),
    JobStatus.running: frozenset(
        {JobStatus.paused, JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.queued}
    ),
    JobStatus.paused: frozenset({JobStatus.queued, JobStatus.cancelled, JobStatus.failed}),
    JobStatus.succeeded: frozenset(),
    JobStatus.failed: frozenset(),
    JobStatus.cancelled: frozenset(),
}


Auto = Literal["auto"]
IntOrAuto = Auto | int
FloatOrAuto = Auto | float


def _or_auto(schema: dict[str, Any]) -> WithJsonSchema:
    """The schema of `"auto"` or a bounded number (the bounds are enforced by the validators below)."""
    return WithJsonSchema({"anyOf": [{"type": "string", "enum": ["auto"]}, schema], "default": "auto"})


PositiveIntOrAuto = Annotated[IntOrAuto, _or_auto({"type": "integer", "minimum": 1})]
PositiveFloatOrAuto = Annotated[FloatOrAuto, _or_auto({"type": "number", "exclusiveMinimum": 0})]
NonNegativeFloatOrAuto = Annotated[FloatOrAuto, _or_auto({"type": "number", "minimum": 0})]


class ReinforcementHyperparameters(JsonTyped):
    """OpenAI's RFT hyperparameters (all `"auto"` by default) plus the local ones."""

    model_config = ConfigDict(extra="forbid")

    # OpenAI's names
    n_epochs: PositiveIntOrAuto = "auto"
    batch_size: PositiveIntOrAuto = "auto"
    learning_rate_multiplier: PositiveFloatOrAuto = "auto"
    eval_interval: PositiveIntOrAuto = "auto"
    eval_samples: PositiveIntOrAuto = "auto"
    compute_multiplier: PositiveFloatOrAuto = "auto"
    reasoning_effort: Literal["default", "low", "medium", "high"] | None = None
    seed: IntOrAuto = "auto"
    # local ones
    num_generations: PositiveIntOrAuto = "auto"
    max_completion_length: PositiveIntOrAuto = "auto"
    max_prompt_length: PositiveIntOrAuto = "auto"
    temperature: PositiveFloatOrAuto = "auto"
    beta: NonNegativeFloatOrAuto = "auto"
    loss_type: Auto | Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "auto"
    learning_rate: PositiveFloatOrAuto = "auto"
    lora_r: PositiveIntOrAuto = "auto"
    lora_alpha: PositiveIntOrAuto = "auto"
    lora_dropout: NonNegativeFloatOrAuto = "auto"
    lora_target_modules: Auto | list[str] = "auto"
    max_steps: PositiveIntOrAuto = "auto"
    precision: Auto | Literal["fp32", "bf16", "fp16"] = "auto"
    use_vllm: Auto | bool = "auto"
    num_processes: PositiveIntOrAuto = "auto"
    save_total_limit: PositiveIntOrAuto = "auto"
    gradient_accumulation_steps: PositiveIntOrAuto = "auto"
    samples_per_step: IntOrAuto = "auto"
    max_episode_steps: PositiveIntOrAuto = "auto"  # rows with tools: model turns per episode (docs/agent-rft.md)
    # GPU memory and generation (docs/hyperparameters.md; the estimate is daemon/memory_estimate.py)
    quantization: Auto | Literal["none", "4bit"] = "auto"
    gradient_checkpointing: Auto | bool = "auto"
    vllm_mode: Auto | Literal["colocate", "server"] = "auto"
    vllm_server_base_url: str | None = Field(default=None, max_length=512,
                                             description="server mode: where `trl vllm-serve` listens")
    vllm_gpu_memory_utilization: Annotated[FloatOrAuto, _or_auto(
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1})] = "auto"
    vllm_enable_sleep_mode: Auto | bool = "auto"
    on_oom: Auto | Literal["fail", "retry_smaller"] = "auto"

    @field_validator("vllm_gpu_memory_utilization")
    @classmethod
    def _fraction(cls, v: Any) -> Any:
        if v != "auto" and not 0 < float(v) <= 1:
            raise ValueError("must be in (0, 1] or \"auto\"")
        return v

    @field_validator(
        "n_epochs", "batch_size", "eval_interval", "eval_samples", "num_generations",
        "max_completion_length", "max_prompt_length", "lora_r", "lora_alpha", "max_steps",
        "num_processes", "save_total_limit", "gradient_accumulation_steps", "max_episode_steps",
    )
    @classmethod
    def _positive_int(cls, v: Any) -> Any:
        if v != "auto" and (isinstance(v, bool) or int(v) < 1):
            raise ValueError("must be a positive integer or \"auto\"")
        return v

    @field_validator("learning_rate_multiplier", "compute_multiplier", "temperature", "learning_rate")
    @classmethod
    def _positive_float(cls, v: Any) -> Any:
        if v != "auto" and float(v) <= 0:
            raise ValueError("must be > 0 or \"auto\"")
        return v

    @field_validator("beta", "lora_dropout")
    @classmethod
    def _non_negative(cls, v: Any) -> Any:
        if v != "auto" and float(v) < 0:
            raise ValueError("must be >= 0 or \"auto\"")
        return v


HYPERPARAMETER_NAMES: tuple[str, ...] = tuple(ReinforcementHyperparameters.model_fields)


# --------------------------------------------------------------------------------------------
# Secrets: what every read path shows instead of a header's value or a password in a URL

#: What a secret reads as wherever a job, a re-scoring or a cluster is shown (API, CLI, TUI, exported cards).
REDACTED = "***"
#: Keys of a spec whose string value is a URL (a password or a key in it is a secret).
_URL_KEYS = frozenset({"url", "address", "storage", "storage_dir", "report_url", "base_url"})
#: Query parameters that carry credentials by common convention (`?key=`, `?access_token=`, signed URLs).
_SECRET_QUERY_KEYS = frozenset({"key", "api_key", "apikey", "api-key", "token", "access_token", "auth", "secret",
                                "password", "sig", "signature", "x-api-key"})


def redact_url(url: str) -> str:
    """`url` with the password of its user info and the values of credential-like query parameters masked."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if sep else f"{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            query = urlencode([(k, REDACTED if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_secrets(value: Any) -> Any:
    """A copy of a grader spec, a tools map or a job's `method` with every secret masked, for showing.

    HTTP tools and endpoint graders carry API keys in `headers` (the names stay, each value becomes
    `REDACTED`) and sometimes in their URL (`redact_url`). Only the worker (the store's snapshot, or the
    cluster worker's authenticated `/report/spec`) ever sees the real values; nested graders (`multi`) are
    walked too. Python sources are code, shown as written.
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "headers" and isinstance(v, Mapping):
                out[k] = dict.fromkeys(v, REDACTED)
            elif k in _URL_KEYS and isinstance(v, str):
                out[k] = redact_url(v)
            else:
                out[k] = redact_secrets(v)
        return out
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return value


#: A tool's name, as rows' `tools` schemas and the model's calls spell it (OpenAI's function-name rule).
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_TOOL_NAME_RE = re.compile(TOOL_NAME_PATTERN)
#: OpenAI's python grader source limit, applied to python tools too.
MAX_TOOL_SOURCE_BYTES = 256 * 1024


def _check_http_url(url: str) -> str:
    """An absolute http(s) URL with a host: the only place the worker will send a tool's calls."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute http:// or https:// URL with a host, got {url!r}")
    return url


class HttpToolRuntime(JsonTyped):
    """A tool served by the user's HTTP endpoint: the worker POSTs each call there (docs/agent-rft.md)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["http"] = "http"
    url: str = Field(min_length=1, max_length=2048)
    timeout_s: float = Field(default=10.0, gt=0, le=600, description="per attempt")
    max_retries: int = Field(default=3, ge=0, le=10, description="extra attempts after a 5xx, timeout or refusal")
    headers: dict[str, str] = Field(default={}, json_schema_extra={"maxProperties": 32})

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_http_url(v)


class PythonToolRuntime(JsonTyped):
    """A tool written in Python (`def call(arguments, item)`), run in the python-grader sandbox."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["python"] = "python"
    source: str = Field(min_length=1)
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="wall time per call")

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        import ast

        if len(v.encode("utf-8")) > MAX_TOOL_SOURCE_BYTES:
            raise ValueError(f"source is over {MAX_TOOL_SOURCE_BYTES // 1024} kB")
        try:
            tree = ast.parse(v, "<tool>")
        except SyntaxError as e:
            raise ValueError(f"source line {e.lineno}: {e.msg}") from None
        if not any(isinstance(n, ast.FunctionDef) and n.name == "call" for n in tree.body):
            raise ValueError("source must define a top-level function `call(arguments, item)`")
        return v


#: How one tool runs; `method.reinforcement.tools` maps each tool name to one.
ToolRuntime = Annotated[HttpToolRuntime | PythonToolRuntime, Field(discriminator="type")]


def parse_tool_runtimes(data: Any) -> dict[str, HttpToolRuntime | PythonToolRuntime]:
    """A `method.reinforcement.tools` value checked (ValueError naming the first bad field, e.g. `add.url`)."""
    from pydantic import TypeAdapter, ValidationError

    if not isinstance(data, dict):
        raise ValueError(f"tools must be an object mapping tool names to how they run, got {type(data).__name__}")
    check_tool_names(data)
    try:
        parsed: dict[str, HttpToolRuntime | PythonToolRuntime] = TypeAdapter(dict[str, ToolRuntime]).validate_python(
            data)
    except ValidationError as e:
        first = e.errors()[0]
        loc = [str(p) for p in first["loc"]]
        where = ".".join(p for i, p in enumerate(loc) if not (i == 1 and p in ("http", "python")))  # union tag
        raise ValueError(f"{where}: {str(first['msg']).removeprefix('Value error, ')}") from None
    return parsed


def check_tool_names(tools: dict[str, Any] | None) -> dict[str, Any] | None:
    if tools is not None:
        for name in tools:
            if not _TOOL_NAME_RE.match(name):
                raise ValueError(f"tool name {name!r} must be 1-64 letters, digits, '_' or '-'")
        if len(tools) > 128:
            raise ValueError("at most 128 tools")
    return tools


class ReinforcementMethod(JsonTyped):
    model_config = ConfigDict(extra="forbid")
    grader: GraderSpec
    hyperparameters: ReinforcementHyperparameters = ReinforcementHyperparameters()
    # extension (agent RFT): how each tool the rows declare runs; rows without `tools` ignore it
    tools: dict[str, ToolRuntime] | None = Field(
        default=None, description="tool name -> how it runs (http endpoint or python in the sandbox); "
                                  "see docs/agent-rft.md")

    @field_validator("tools")
    @classmethod
    def _tool_names(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_tool_names(v)


class JobMethod(JsonTyped):
    model_config = ConfigDict(extra="allow")
    type: Literal["reinforcement"] = "reinforcement"
    reinforcement: ReinforcementMethod


# --------------------------------------------------------------------------------------------
# Health (extension): guardrails a job is created with, and the alarms it raises (docs/health.md)

#: Every alarm a job can raise; the defaults, windows and their sources are in daemon/health.py (ALARMS).
AlarmName = Literal["zero_signal", "train_valid_gap", "valid_regression", "reward_saturated", "length_clipped",
                    "entropy_collapse", "grader_errors", "grader_slow", "non_finite", "tool_errors", "stalled"]
ALARM_NAMES: tuple[str, ...] = AlarmName.__args__  # type: ignore[attr-defined]
AlarmSeverity = Literal["warning", "critical"]
#: What an alarm did: `warn` (an alarm row and event only), `pause`/`cancel` (on_alarm), `fail` (on_stall).
AlarmAction = Literal["warn", "pause", "cancel", "fail"]


class AlarmOverride(StrictRequest):
    """One alarm's settings for a job; each field left out keeps the documented default."""

    enabled: bool = True
    threshold: float | None = Field(default=None, description="the alarm's bound (its unit: docs/health.md)")
    critical: float | None = Field(default=None, description="train_valid_gap only: the critical bound")
    window: int | None = Field(default=None, ge=1, description="steps (zero_signal: groups) the alarm looks at")
    severity: AlarmSeverity | None = None


class Guardrails(StrictRequest):
    """Extension object `guardrails` on job create: alarm thresholds and what a critical alarm or a stall does."""

    on_alarm: Literal["warn", "pause", "cancel"] = Field(
        default="warn", description="what a critical alarm does: warn (record it), pause (checkpoint, end paused) "
        "or cancel")
    on_stall: Literal["warn", "fail"] = Field(default="warn", description="what `stalled` does: warn, or fail the job")
    stall_factor: float = Field(default=10.0, gt=1, description="stalled: no step for this many median step times")
    stall_min_s: float = Field(default=300.0, gt=0, description="stalled: and at least this many seconds")
    alarms: dict[AlarmName, AlarmOverride] = Field(default_factory=dict,
                                                   description="per-alarm overrides by alarm name")


class JobAlarm(WireModel):
    """Extension `fine_tuning.job.alarm`: one episode of an alarm (fired once, cleared when the signal recovers)."""

    object: Literal["fine_tuning.job.alarm"] = "fine_tuning.job.alarm"
    id: str
    created_at: int
    name: AlarmName
    severity: AlarmSeverity
    step: int | None = None
    value: float | None = None
    threshold: float | None = None
    message: str
    action: AlarmAction = "warn"
    grader: str | None = None  # per-grader alarms (grader_errors, grader_slow): which grader
    fine_tuning_job_id: str | None = None
    cleared_at: int | None = None
    cleared_step: int | None = None


SUFFIX_PATTERN = r"^[A-Za-z0-9_.-]{0,64}$"
CLUSTER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_SUFFIX_RE = re.compile(SUFFIX_PATTERN)
#: numpy (through transformers' set_seed) takes seeds in [0, 2**32 - 1]; a job is refused outside it.
MAX_SEED = 2**32 - 1


class JobCreateRequest(StrictRequest):
    """Body of `POST /v1/fine_tuning/jobs` (OpenAI's shape; only the reinforcement method here)."""

    model: str = Field(min_length=1, max_length=512)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    suffix: str | None = Field(default=None, json_schema_extra={"pattern": SUFFIX_PATTERN, "maxLength": 64})
    metadata: dict[Annotated[str, StringConstraints(max_length=64)],
                   Annotated[str, StringConstraints(max_length=512)]] | None = Field(
        default=None, json_schema_extra={"maxProperties": 16}, description="up to 16 keys (64 chars) and values (512)")
    method: JobMethod
    # OpenAI's deprecated top-level field: refused unless empty (use method.reinforcement.hyperparameters)
    hyperparameters: dict[str, Any] | None = Field(default=None, json_schema_extra={"maxProperties": 0},
                                                   deprecated=True)
    integrations: list[Any] | None = None
    # local extensions
    allow_overlap: bool = False
    guardrails: Guardrails | None = None
    cluster: str | None = Field(default=None, min_length=1, max_length=64, pattern=CLUSTER_NAME_PATTERN,
                                description="run on this configured cluster (GET /v1/clusters) instead of locally")
    nodes: int | None = Field(default=None, ge=1, le=4096, description="cluster nodes (default: the cluster's)")
    gpus_per_node: int | None = Field(default=None, ge=0, le=64,
                                      description="GPUs per node (default: the cluster's; 0 = CPU processes)")
    force: bool = Field(default=False, description="create the job even when the memory estimate says it clearly "
                        "does not fit (over the tightest device's free memory by more than 25 %)")

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, v: str | None) -> str | None:
        if v is not None and not _SUFFIX_RE.match(v):
            raise ValueError("suffix may hold up to 64 letters, digits, '-', '_' or '.'")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None and len(v) > 16:
            raise ValueError("metadata holds at most 16 keys")
        return v


class JobError(WireModel):
    code: str
    message: str
    param: str | None = None


class JobProgress(WireModel):
    """Extension: where a job is (so lists can show a progress bar without fetching metrics)."""

    step: int = 0
    total_steps: int | None = None
    train_reward_mean: float | None = None
    valid_reward_base: float | None = None
    valid_reward_latest: float | None = None
    valid_reward_best: float | None = None
    started_at: int | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    # training health (docs/health.md): alarms whose episode has not cleared, the worst severity, the latest name
    alarms_open: int = 0
    alarm_severity: Literal["warning", "critical"] | None = None
    alarm_latest: str | None = None


class JobPlacement(WireModel):
    """Extension on a job object: the cluster it runs on and the engine's own id for it."""

    name: str
    kind: ClusterKind
    engine_id: str | None = Field(default=None, description="Ray submission id or Slurm job id (latest attempt)")
    nodes: int = 1
    gpus_per_node: int = 0
    processes_per_node: int = 1
    storage_dir: str = Field(description="where the job's files and checkpoints live on the cluster's storage")
    engine_state: str | None = Field(default=None, description="the engine's last reported state")

    def redacted(self) -> JobPlacement:
        return self.model_copy(update={"storage_dir": redact_url(self.storage_dir)})


class FineTuningJob(WireModel):
    """OpenAI `fine_tuning.job`, plus `progress`, `resolved_hyperparameters` and `snapshot`."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: dict[str, Any] = {}
    model: str
    organization_id: str = "local"
    result_files: list[str] = []
    seed: int
    status: JobStatus
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any] = {}
    user_provided_suffix: str | None = None
    # extensions
    progress: JobProgress = JobProgress()
    resolved_hyperparameters: ResolvedHyperparameters | None = None
    snapshot: JobSnapshot | None = None
    worker: dict[str, Any] | None = None
    cluster: JobPlacement | None = Field(default=None, description="where a cluster job runs (extension)")


class JobEvent(WireModel):
    """OpenAI `fine_tuning.job.event`; `type: "metrics"` events carry step, total_steps and scores."""

    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"] = "info"
    message: str
    data: dict[str, Any] | None = None
    type: Literal["message", "metrics"] = "message"


class CheckpointMetrics(WireModel):
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    train_reward_mean: float | None = None
    valid_reward_mean: float | None = None


class JobCheckpoint(WireModel):
    """OpenAI `fine_tuning.job.checkpoint`, plus where the adapter lies on disk."""

    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int
    path: str | None = None
    kept_because: list[str] = []


class MetricStep(WireModel):
    """Extension: every number logged at one training step (TRL's names plus ours)."""

    step: int
    created_at: float
    values: dict[str, float | None]


class MetricsPage(WireModel):
    object: Literal["list"] = "list"
    job_id: str
    data: list[MetricStep]
    last_step: int | None = None
    has_more: bool = False


class ToolCallRecord(WireModel, JsonTyped):
    """One tool call the model made in an episode, with what came back (docs/agent-rft.md)."""

    id: str
    name: str
    arguments: Any = None  # the parsed JSON arguments (an object), or the raw text when it did not parse
    result: str | None = None  # the text the model was shown (None when the call failed)
    error: str | None = None  # why the call failed (malformed call, unknown tool, bad arguments, 5xx, timeout)
    latency_ms: float | None = None  # wall time of running it (all attempts); None when it never ran


class TrajectoryTurn(WireModel, JsonTyped):
    """One turn of an episode after the prompt: the model's (`assistant`) or a tool result fed back (`tool`)."""

    role: Literal["assistant", "tool"]
    content: str  # assistant: its text outside tool-call blocks; tool: the result (or error) the model saw
    tool_calls: list[ToolCallRecord] = []  # assistant turns: the calls it made, results included
    tool_call_id: str | None = None  # tool turns: which call this answers
    name: str | None = None  # tool turns: the tool's name


#: Why an episode ended: the model answered without calling a tool, it used all `max_episode_steps` turns,
#: or the episode ran out of `max_completion_length` tokens (tool results count against it).
EpisodeStop = Literal["final_answer", "max_episode_steps", "token_budget"]


def flat_tool_calls(turns: list[TrajectoryTurn] | None) -> list[ToolCallRecord] | None:
    """Every tool call of an episode, in order (`sample.tool_calls`)."""
    if turns is None:
        return None
    return [call for turn in turns for call in turn.tool_calls]


class ValidationRow(WireModel):
    """Extension: one validation example's output and scores at one step (step 0 = base model)."""

    step: int
    row_index: int
    prompt: str
    reference: str | None = None
    output: str
    reward: float
    sub_rewards: dict[str, float] = {}
    errors: dict[str, Any] = {}
    item: dict[str, Any] | None = None
    # agent RFT (rows with tools): the episode turn by turn; `output` is its final answer
    output_messages: list[TrajectoryTurn] | None = None
    tool_calls: list[ToolCallRecord] | None = None
    stop_reason: EpisodeStop | None = None


class ValidationPage(WireModel):
    object: Literal["list"] = "list"
    job_id: str
    step: int | None
    steps: list[int] = []
    data: list[ValidationRow]
    summary: dict[str, float] = {}


class PairedStats(WireModel):
    """A checkpoint's per-row rewards against the base's, over the rows both have (daemon/stats.py).

    `ci95`: 95 % paired-bootstrap interval of `mean_diff` (rows resampled with replacement, seeded);
    `p_value`: exact two-sided sign test over the rows that changed (`wins` + `losses`; ties left out).
    Numbers are None when no row is in both steps.
    """

    n: int
    base_mean: float | None = None
    mean: float | None = None
    mean_diff: float | None = None
    ci95: tuple[float, float] | None = None
    wins: int = 0
    losses: int = 0
    ties: int = 0
    p_value: float | None = None

    def headline(self) -> str:
        """`+0.255 [0.21, 0.30]  p<0.001  89↑ 11↓` (ties added as `3=` when there are any)."""
        if self.n == 0 or self.mean_diff is None or self.ci95 is None:
            return "no rows in both steps"
        lo, hi = self.ci95
        ties = f" {self.ties}=" if self.ties else ""
        p = format_p_value(self.p_value)
        return f"{self.mean_diff:+.3f} [{lo:.2f}, {hi:.2f}]  {p}  {self.wins}↑ {self.losses}↓{ties}"


def format_p_value(p: float | None) -> str:
    """`p<0.001`, `p=0.032`, `p=1`."""
    if p is None:
        return "p=n/a"
    if p < 0.001:
        return "p<0.001"
    if p >= 1:
        return "p=1"
    return "p=" + f"{p:.3f}".rstrip("0").rstrip(".")


class ValidationCompare(PairedStats):
    """Extension: `GET /v1/fine_tuning/jobs/{id}/validation/compare?base_step=0&step=N`, overall and per grader."""

    object: Literal["fine_tuning.job.validation_compare"] = "fine_tuning.job.validation_compare"
    job_id: str
    base_step: int
    step: int
    rescoring: str | None = None  # the named re-scoring whose rewards were compared (None: the original scores)
    resamples: int
    seed: int
    per_grader: dict[str, PairedStats] = {}


#: A re-scoring's name: a letter or digit, then letters, digits, '_', '-' or '.'; 64 characters at most.
RESCORING_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class RescoreRequest(StrictRequest):
    """Extension: `POST /v1/fine_tuning/jobs/{id}/rescore`: grade the job's stored outputs again with `grader`.

    The result is kept as a named re-scoring beside the original scores, which are never changed.
    """

    grader: GraderSpec
    name: str | None = Field(default=None, pattern=RESCORING_NAME_PATTERN,
                             description="default: the grader's name (with -2, -3, ... when taken)")
    steps: list[Annotated[int, Field(ge=0, le=INT64_MAX)]] | None = Field(
        default=None, max_length=10_000, description="validation steps to re-score (default: every validated "
        "step); the base step is always re-scored too, for the comparison")
    samples: bool = Field(default=False, description="also re-grade the stored training samples")
    base_step: int = Field(default=0, ge=0, le=INT64_MAX, description="the step the comparison starts from")


class RescoreStep(WireModel):
    """One validation step's rows re-graded: the new mean beside the original one."""

    step: int
    rows: int
    mean: float | None = None
    original_mean: float | None = None
    rows_with_errors: int = 0
    per_grader: dict[str, float] = {}


class RescoreSamples(WireModel):
    """The stored training samples re-graded (each against the item it was first graded with)."""

    samples: int
    mean: float | None = None
    original_mean: float | None = None
    rows_with_errors: int = 0
    without_item: int = Field(default=0, description="samples stored without their item and not found in the "
                              "training file by prompt: graded against an empty item")
    per_grader: dict[str, float] = {}


class Rescoring(WireModel):
    """Extension: a named re-scoring of a job's stored outputs (original scores untouched)."""

    object: Literal["fine_tuning.job.rescoring"] = "fine_tuning.job.rescoring"
    id: str
    job_id: str
    name: str
    created_at: int
    grader: dict[str, Any]
    steps: list[RescoreStep] = []
    samples: RescoreSamples | None = None
    compare: ValidationCompare | None = None  # base step vs the last re-scored step, both with the new grader
    elapsed_s: float = 0.0


class TrainingSample(WireModel):
    """Extension: one training completion with its reward and sub-rewards."""

    id: int
    step: int
    prompt: str
    completion: str
    reward: float
    sub_rewards: dict[str, float] = {}
    errors: dict[str, Any] = {}
    # agent RFT (rows with tools): the episode turn by turn; `completion` is its final answer
    output_messages: list[TrajectoryTurn] | None = None
    tool_calls: list[ToolCallRecord] | None = None
    stop_reason: EpisodeStop | None = None


class SamplesPage(WireModel):
    object: Literal["list"] = "list"
    job_id: str
    data: list[TrainingSample]
    has_more: bool = False


class JobLog(WireModel):
    job_id: str
    path: str | None
    lines: list[str]


class JobScript(WireModel):
    """Extension: what a cluster job is submitted as (Slurm: the sbatch script; Ray: entrypoint + runtime_env)."""

    object: Literal["fine_tuning.job.script"] = "fine_tuning.job.script"
    job_id: str
    cluster: str
    kind: ClusterKind
    script: str


class ModelCheckRequest(StrictRequest):
    """Body of `POST /v1/models/check` (extension): is this model reference loadable, without loading it."""

    model: str = Field(min_length=1, max_length=512)


class ModelCheck(WireModel):
    """What a model reference resolves to; a reference that cannot load is a 400 naming `model` instead."""

    object: Literal["model_check"] = "model_check"
    model: str
    source: Literal["builtin", "local", "hub"]
    id: str
    revision: str | None = None
    cached: bool
    detail: str = ""


class PreflightRequest(JobCreateRequest):
    """Extension: same arguments as a job, plus how much to sample."""

    rows: int = Field(default=16, ge=1, le=1024)
    completions_per_row: int = Field(default=8, ge=1, le=64)
    estimate_only: bool = Field(default=False, description="answer the memory-fit estimate alone (from the model's "
                                "config, well under a second, no weights loaded); the sampling fields stay null")


class DeviceMemory(WireModel):
    """One device the job would train on, as the daemon sees it now (no torch: nvidia-smi, or RAM on CPU)."""

    device: str  # "cuda:0" | "cpu"
    name: str = ""
    total_bytes: int | None = None
    free_bytes: int | None = None
    bf16: bool | None = None  # compute capability >= 8.0 (None on CPU)
    fits: bool | None = None


class MemoryEstimate(WireModel):
    """Estimated peak memory per device for a job, from the model's config alone (no weights loaded).

    The rules are in daemon/memory_estimate.py (docs/gpu.md "Memory estimate"): weights at the precision or
    4-bit, LoRA adapter + its gradients in fp32, AdamW's two fp32 states, activations of one micro-batch (all
    layers, or one layer's input per layer with gradient checkpointing) plus the completion logits, and the
    generation KV cache (HF generate) or the vLLM pool (colocate mode).
    """

    model: str
    parameters: int  # every parameter of the base model (tied embeddings counted once)
    parameter_source: str = ""  # "config" (architecture rule), "meta-device" (instantiated) or "built-in"
    weights_bytes: int
    trainable_params: int
    lora_bytes: int  # adapter weights + their gradients
    optimizer_bytes: int
    activations_bytes: int
    generation_bytes: int
    overhead_bytes: int = 0  # CUDA context and allocator slack (CPU: the runtime)
    total_bytes: int
    device: str  # the tightest device: "cuda:0", "cpu"
    device_free_bytes: int | None = None
    device_total_bytes: int | None = None
    fits: bool | None = None  # None when free memory is unknown
    clearly_does_not_fit: bool = False  # over free memory by more than the estimate's +-20%: create refuses
    verdict: str = ""
    suggestion: str | None = None  # the cheapest change that makes it fit, in words
    suggested_hyperparameters: dict[str, Any] = {}  # that change, as hyperparameters
    devices: list[DeviceMemory] = []
    assumptions: dict[str, Any] = {}  # micro-batch, sequence length, precision, checkpointing, vLLM, ...


class LocalModel(WireModel):
    """OpenAI's model object (`GET /v1/models`), plus where it is, its size and whether it fits here."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "local"
    source: Literal["builtin", "local", "hub"] = "hub"
    path: str | None = None
    size_bytes: int | None = None  # on disk (the HF cache's own count); None for a built-in model not built yet
    parameters: int | None = None
    fits: bool | None = None  # the memory estimate with default settings, on this machine's tightest device
    verdict: str = ""


class DoctorCheck(WireModel):
    name: str
    status: Literal["ok", "warn", "fail"]
    detail: str
    fix: str | None = None


class DoctorReport(WireModel):
    """`GET /v1/doctor`: is this machine ready to train (the daemon's machine: where the workers run)?"""

    object: Literal["doctor"] = "doctor"
    ok: bool  # no line failed
    checks: list[DoctorCheck]
    models: list[LocalModel] = []  # the Hugging Face cache's models
    elapsed_s: float = 0.0


class PreflightRowSignal(WireModel):
    """Pre-flight's signal map: one sampled training row's rewards over its k completions (issue 11)."""

    row: int = Field(description="0-based index of the row in the training file")
    prompt: str
    rewards: list[float]
    mean: float
    spread: float = Field(description="max - min of the row's rewards")
    signal: bool = Field(description="false: every completion scored the same, so GRPO learns nothing here")


class PreflightProbe(WireModel):
    """A degenerate answer graded against every sampled row: does the grader pay for not solving the task?"""

    name: str
    description: str
    reward_mean: float
    reward_max: float
    rows_full_credit: int
    example: str = ""
    reaches_base: bool = Field(description="its mean reward is above 0 and at least the base model's mean")


class PreflightToolUse(WireModel):
    """Agent RFT: how the base model used the job's tools in pre-flight's episodes."""

    episodes: int
    call_rate: float = Field(description="share of episodes with at least one tool call")
    calls_per_episode: float
    calls: int
    error_rate: float = Field(description="share of tool calls that failed")
    errors: dict[str, int] = Field(default={}, description="failed calls by kind: malformed_call, unknown_tool, "
                                   "bad_arguments, http_error, timeout, unreachable, bad_answer, python_error")
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    stop_reasons: dict[str, int] = {}
    example_errors: list[str] = []


class PreflightReport(WireModel):
    """Pre-flight's answer. With `estimate_only` only `model`, `memory_estimate` and `verdict` are filled."""

    object: Literal["fine_tuning.preflight"] = "fine_tuning.preflight"
    model: str
    estimate_only: bool = False
    rows: int = 0
    completions_per_row: int = 0
    reward_mean: float | None = None
    reward_std: float | None = None
    reward_histogram: list[tuple[float, int]] = []
    zero_signal_rows: int | None = None
    zero_signal_fraction: float | None = None
    grader_errors: dict[str, int] = {}
    grader_error_rate: float | None = None
    longest_prompt_tokens: int | None = None
    longest_completion_tokens: int | None = None
    longest_total_tokens: int | None = None
    examples: list[dict[str, Any]] = []
    verdict: str = ""
    elapsed_s: float = 0.0
    # issue 11: a pre-flight that tries to fool the grader
    signal_map: list[PreflightRowSignal] = []
    no_signal_rows: list[int] = Field(default=[], description="training rows whose completions all scored the same")
    probes: list[PreflightProbe] = []
    gameability_warning: str | None = None
    # issue 13: jobs with tools play episodes; how the base model used the tools (None without tools)
    tools: PreflightToolUse | None = None
    memory_estimate: MemoryEstimate | None = None
    memory_estimate_error: str | None = None  # why there is no estimate (e.g. a hub model not in the local cache)


# --------------------------------------------------------------------------------------------
# Clusters (extension): Ray or Slurm clusters a job can run on instead of this machine

ClusterKind = Literal["ray", "slurm"]
#: `storage`: an absolute shared path, or an fsspec URL (scheme://...; Ray clusters run jobs on s3:// and others)
FSSPEC_SCHEMES = ("s3", "gs", "gcs", "abfs", "az", "hdfs", "file")
#: storage_options keys whose values are secrets (matched as substrings, case-insensitive, at any depth)
SECRET_OPTION_WORDS = ("secret", "token", "password", "key", "credential", "sas")


def redact_options(options: Any) -> Any:
    """storage_options as shown over the API: every secret-looking key's value replaced by ***."""
    if isinstance(options, dict):
        return {k: REDACTED if any(w in str(k).lower() for w in SECRET_OPTION_WORDS) and not isinstance(v, dict)
                else redact_options(v) for k, v in options.items()}
    if isinstance(options, list):
        return [redact_options(v) for v in options]
    return options


class ClusterDefaults(BaseModel):
    """Per-cluster defaults a job on it starts from (`jobs create --nodes/--gpus-per-node` override them)."""

    model_config = ConfigDict(extra="forbid")

    nodes: int = Field(default=1, ge=1, le=4096)
    gpus_per_node: int = Field(default=0, ge=0, le=64, description="0: CPU processes (`processes_per_node`)")
    processes_per_node: int = Field(default=1, ge=1, le=64,
                                    description="worker processes per node when gpus_per_node is 0")
    partition: str | None = Field(default=None, min_length=1, max_length=128, description="Slurm partition")
    account: str | None = Field(default=None, min_length=1, max_length=128, description="Slurm account")
    time_limit: str | None = Field(default=None, min_length=1, max_length=32, pattern=r"^[0-9:-]+$",
                                   description="Slurm time limit ([D-]HH:MM:SS or minutes)")
    storage: str = Field(min_length=1, max_length=MAX_PATH_CHARS,
                         description="a path the cluster writes and the daemon reads (shared), or an fsspec URL")
    storage_options: dict[str, Any] | None = Field(
        default=None, description="fsspec options for a URL storage (e.g. {\"client_kwargs\": {\"endpoint_url\": "
        "...}}, key/secret): used by the daemon, and handed to the worker as its report token is (never in a "
        "runtime_env or script); secret values are shown redacted")
    python: str | None = Field(default=None, min_length=1, max_length=MAX_PATH_CHARS,
                               description="the Python on the cluster's nodes (default: `python3` on the PATH)")
    report_url: str | None = Field(default=None, min_length=1, max_length=2048, pattern=r"^https?://",
                                   description="the daemon's URL as the cluster sees it (default: from --tcp)")


class ClusterCreateRequest(ClusterDefaults):
    """Body of `POST /v1/clusters`: one of `ray` (job server address) or `slurm` (optionally with `ssh`)."""

    name: str = Field(min_length=1, max_length=64, pattern=CLUSTER_NAME_PATTERN)
    kind: ClusterKind
    address: str | None = Field(default=None, min_length=1, max_length=2048, pattern=r"^https?://",
                                description="Ray: the job server (dashboard) address, http://HEAD:8265")
    ssh: str | None = Field(default=None, min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.@:-]+$",
                            description="Slurm: run sbatch/squeue/scancel through `ssh [USER@]LOGIN_HOST[:PORT]`")
    ssh_options: str | None = Field(
        default=None, min_length=1, max_length=2048,
        description="Slurm over ssh: extra ssh arguments, split as a shell would (e.g. `-i ~/.ssh/key -o "
                    "StrictHostKeyChecking=accept-new`, or `-F ~/.ssh/config.cluster`)")
    replace: bool = Field(default=False, description="replace a cluster of the same name")


class Cluster(WireModel):
    """A configured cluster, as stored in `$RFT_HOME/clusters.json` (0600)."""

    object: Literal["cluster"] = "cluster"
    name: str
    kind: ClusterKind
    address: str | None = None
    ssh: str | None = None
    ssh_options: str | None = None
    defaults: ClusterDefaults
    created_at: int

    def redacted(self) -> Cluster:
        """As shown (API, CLI): a password or key in the address or storage URLs masked, and every secret-looking
        value of storage_options (the 0600 file keeps them)."""
        d = self.defaults
        defaults = d.model_copy(update={"storage": redact_url(d.storage),
                                        "report_url": d.report_url and redact_url(d.report_url),
                                        "storage_options": redact_options(d.storage_options)})
        return self.model_copy(update={"address": self.address and redact_url(self.address), "defaults": defaults})


class ClusterTestResult(WireModel):
    """`POST /v1/clusters/{name}/test`: a trivial job submitted, waited for, and its round trip."""

    object: Literal["cluster.test"] = "cluster.test"
    name: str
    ok: bool
    engine_id: str | None = None
    round_trip_s: float
    state: str
    output: str = ""
    detail: str = ""
    storage_round_trip_s: float | None = Field(
        default=None, description="URL storage: seconds to write, read back and delete a probe object there")


# --------------------------------------------------------------------------------------------
# Graders (OpenAI's alpha grader endpoints). Grader specs stay plain dicts on the wire; the daemon
# validates them with the `graders` package, which this module must not import.


class GraderRunRequest(StrictRequest):
    grader: GraderSpec
    model_sample: str
    item: dict[str, Any] | None = None
    reference_answer: Any | None = None


class GraderRunMetadataErrors(WireModel):
    formula_parse_error: bool = False
    invalid_variable_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_server_error: bool = False
    model_grader_server_error_details: str | None = None
    other_error: bool = False
    python_grader_out_of_range_error: bool = False  # the reward was clamped to [0, 1] (kept, not zeroed)
    python_grader_out_of_range_error_details: str | None = None
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    sample_parse_error: bool = False
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False


class GraderRunMetadata(WireModel):
    errors: GraderRunMetadataErrors = GraderRunMetadataErrors()
    execution_time: float = 0.0
    name: str = ""
    sampled_model_name: str | None = None
    sandbox: str | None = None  # python graders: "bubblewrap" or "off" (RFT_SANDBOX=off)
    scores: dict[str, Any] = {}
    token_usage: int | None = None
    type: str = ""


class GraderRunResponse(WireModel):
    reward: float
    metadata: GraderRunMetadata
    sub_rewards: dict[str, Any] = {}
    model_grader_token_usage_per_model: dict[str, Any] = {}


class GraderValidateRequest(StrictRequest):
    grader: GraderSpec


class GraderValidateResponse(WireModel):
    grader: dict[str, Any] | None = None
    errors: list[str] = []
    item_fields: list[str] = []


class GraderTestRequest(StrictRequest):
    """Extension: grade a dataset column (each row's reference answer, or a column of outputs) with a grader."""

    grader: GraderSpec
    file_id: str
    field: str | None = None
    limit: int = Field(default=1000, ge=1, le=1_000_000)


class GraderTestExample(WireModel):
    line: int
    sample: str
    reward: float
    errors: list[str] = []


class GraderTestReport(WireModel):
    object: Literal["grader.test"] = "grader.test"
    file_id: str
    field: str
    rows: int
    graded: int
    missing_field: int
    reward_mean: float | None
    reward_std: float | None
    reward_min: float | None
    reward_max: float | None
    pass_rate: float | None
    histogram: list[tuple[float, int]]
    errors: dict[str, int]
    rows_with_errors: int
    sub_reward_means: dict[str, float] = {}
    lowest: list[GraderTestExample] = []
    elapsed_s: float = 0.0


class GraderFile(WireModel):
    """Extension: a grader kept as a file under `$RFT_HOME/graders/`."""

    object: Literal["grader.file"] = "grader.file"
    name: str
    path: str
    format: Literal["json", "yaml", "python"]
    modified_at: float
    bytes: int
    content: str | None = None
    valid: bool | None = None
    errors: list[str] = []


#: A grader file's name under `$RFT_HOME/graders/` (daemon/grader_store.py checks the same rule): a letter or
#: digit, then letters, digits, '_', '-' and single dots, ending in .json, .yaml, .yml or .py; 128 chars at most.
GRADER_FILE_NAME_PATTERN = (r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*"
                            r"\.([jJ][sS][oO][nN]|[yY][aA]?[mM][lL]|[pP][yY])$")
MAX_GRADER_FILE_NAME = 128
MAX_GRADER_FILE_BYTES = 1024 * 1024


class GraderFileSave(StrictRequest):
    content: str = Field(json_schema_extra={"maxLength": MAX_GRADER_FILE_BYTES},
                         description="the file's text; at most 1 MiB once UTF-8 encoded")
    expected_modified_at: float | None = None


# --------------------------------------------------------------------------------------------
# Server-sent events on /v1/stream


class StreamEventType(str, Enum):
    job_status = "job.status"
    job_created = "job.created"
    job_metrics = "job.metrics"
    job_validation = "job.validation"
    job_event = "job.event"
    job_alarm = "job.alarm"
    file_created = "file.created"
    grader_changed = "grader.changed"
    heartbeat = "heartbeat"


class StreamEvent(WireModel):
    type: StreamEventType
    job_id: str | None = None
    status: JobStatus | None = None
    step: int | None = None
    data: dict[str, Any] | None = None
    created_at: float


def job_sort_key(job: FineTuningJob) -> tuple[int, str]:
    """Newest first, as OpenAI lists jobs."""
    return (-job.created_at, job.id)


# --------------------------------------------------------------------------------------------
# Export (extension): a job's checkpoint as a loadable LoRA adapter, optionally merged into the base model


class JobExportRequest(StrictRequest):
    output_dir: str = Field(min_length=1)
    checkpoint_step: int | None = Field(default=None, ge=0, description="default: the best kept checkpoint")
    checkpoint: str | None = Field(default=None, description="'best' (default: by validation reward), 'latest' "
                                   "or a step number; wins over checkpoint_step")
    merged: bool = False
    overwrite: bool = False


class JobExportResult(WireModel):
    object: Literal["fine_tuning.job.export"] = "fine_tuning.job.export"
    job_id: str
    checkpoint: str
    step: int
    output_dir: str
    adapter_dir: str
    merged_dir: str | None = None
    base_model: str
    files: list[str] = []
    chosen_because: str | None = None  # why this checkpoint: "best validation reward (0.62 at step 40)", "latest", ...
    model_card: str | None = None  # README.md written into output_dir


# --------------------------------------------------------------------------------------------
# A job's frozen snapshot and its resolved hyperparameters (typed internal shapes, also on the wire as
# FineTuningJob.snapshot / .resolved_hyperparameters). Built once, where the job is created (daemon/jobs.py
# `build_job`, daemon/hyperparams.py `resolve_hyperparameters`); read as attributes by the worker, pre-flight,
# export, the model card, the TUI and the CLI. Stored as JSON in the jobs table: every field added later needs
# a default, so rows written before it existed still load.


class SnapshotModel(WireModel):
    """The base model a job trains: `builtin:NAME`, a local directory, or a hub id pinned to a revision."""

    id: str
    source: Literal["builtin", "local", "hub"] | None = None
    revision: str | None = None

    @classmethod
    def of(cls, model: SnapshotModel | dict[str, Any] | str) -> SnapshotModel:
        """A snapshot's `model` as stored (a dict), or a bare reference (`org/name@rev`, a path, builtin:NAME)."""
        if isinstance(model, SnapshotModel):
            return model
        if isinstance(model, dict):
            return cls.model_validate(model)
        name, _, revision = model.partition("@")
        if model.startswith("builtin:"):
            return cls(id=model, source="builtin")
        if model.startswith(("/", ".", "~")):
            return cls(id=model, source="local")
        return cls(id=name, source="hub", revision=revision or None)

    def ref(self) -> str:
        """The one string that loads it: `id`, or `id@revision` for a hub model pinned to a revision other than
        main (so a merge or export of `org/name@rev` loads `rev`, not the default branch)."""
        if self.source == "hub" and self.revision and self.revision != "main" and "@" not in self.id:
            return f"{self.id}@{self.revision}"
        return self.id


class SnapshotFile(WireModel):
    """A dataset as the job saw it: the stored file's id, content hash, size and where the store keeps it."""

    id: str
    sha256: str | None = None
    rows: int | None = None
    filename: str | None = None
    bytes: int | None = None
    path: str | None = None


class SnapshotDevice(WireModel):
    """What the daemon detected at creation (the `"auto"` rules for precision and num_processes used it)."""

    kind: str = "cpu"  # "cuda" | "cpu"
    count: int = 1


class ResolvedHyperparameters(WireModel, JsonTyped):
    """Every hyperparameter a job runs with, each `"auto"` replaced by the value its rule gave.

    The rules are in daemon/hyperparams.py and docs/hyperparameters.md. A rule that is a constant is also the
    field's default here, so a row stored before a field existed loads with the value that job ran with.
    """

    # rules that depend on the data, the model or the device
    n_epochs: int
    batch_size: int
    max_steps: int
    learning_rate: float
    eval_interval: int
    eval_samples: int
    seed: int
    num_generations: int
    max_completion_length: int
    max_prompt_length: int = 1024
    lora_alpha: int = 32
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16"
    num_processes: int = 1
    device: str = "cpu"  # "cuda" | "cpu"
    # constant rules
    compute_multiplier: float = 1.0
    learning_rate_multiplier: float = 1.0
    gradient_accumulation_steps: int = 1
    reasoning_effort: str = "default"
    temperature: float = 1.0
    beta: float = 0.01
    loss_type: str = "dapo"
    lora_r: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: str | list[str] = "all-linear"
    use_vllm: bool = False
    save_total_limit: int = 4
    samples_per_step: int = 8
    max_episode_steps: int = 8
    quantization: str = "none"  # "none" | "4bit"
    gradient_checkpointing: bool = False
    vllm_mode: str = "colocate"  # "colocate" | "server"
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = 0.3
    vllm_enable_sleep_mode: bool = False
    on_oom: str = "fail"  # "fail" | "retry_smaller"
    #: why each "auto" that depends on the machine or the estimate came out as it did (use_vllm, precision, ...)
    auto_reasons: dict[str, str] = {}

    @property
    def per_device_batch_size(self) -> int:
        """Completions per process per micro-step: the global batch split over processes and accumulation."""
        return max(1, self.completions_per_step // max(1, self.num_processes * self.gradient_accumulation_steps))

    @property
    def completions_per_step(self) -> int:
        """What one optimizer step samples: batch_size prompts x num_generations completions each."""
        return self.batch_size * self.num_generations

    @property
    def on_cuda(self) -> bool:
        return self.device == "cuda"


class JobSnapshot(WireModel):
    """Everything a job depends on, frozen at creation, so it can be reproduced and read alone."""

    model: SnapshotModel
    training_file: SnapshotFile
    validation_file: SnapshotFile | None = None
    grader: GraderSpec
    hyperparameters: ResolvedHyperparameters
    hyperparameters_requested: dict[str, Any] = {}
    tools: dict[str, ToolRuntime] = {}  # agent RFT: how each tool runs (empty: no tool runs)
    seed: int
    versions: dict[str, str | None] = {}
    device: SnapshotDevice = SnapshotDevice()
    suffix: str | None = None
    created_at: int | None = None
    guardrails: Guardrails | None = None  # None: a job created before guardrails existed (the defaults)
    memory_estimate: MemoryEstimate | None = None  # at creation; the worker quotes it when it runs out of memory
    memory_estimate_error: str | None = None  # why there is none (e.g. a hub model not in the local cache)

    @field_validator("model", mode="before")
    @classmethod
    def _bare_model(cls, v: Any) -> Any:
        """Accept a bare reference string for `model` (what the earliest snapshots held)."""
        return SnapshotModel.of(v) if isinstance(v, str) else v

    def model_ref(self) -> str:
        """The string that loads the base model (id, or id@revision for a pinned hub model)."""
        return self.model.ref()

    @property
    def grader_name(self) -> str:
        """The grader's name as TRL logs it (`rewards/<name>/mean`): no '/' in it."""
        return str(self.grader.get("name") or "grader").replace("/", "_")

    @classmethod
    def from_json(cls, text: str | bytes) -> JobSnapshot:
        return cls.model_validate_json(text)

    def redacted(self) -> JobSnapshot:
        """This snapshot as every reader but the worker sees it: headers and URL passwords masked."""
        tools = {name: t.model_copy(update={"headers": dict.fromkeys(t.headers, REDACTED), "url": redact_url(t.url)})
                 if isinstance(t, HttpToolRuntime) else t for name, t in self.tools.items()}
        return self.model_copy(update={"grader": redact_secrets(self.grader), "tools": tools})



# --------------------------------------------------------------------------------------------
# Reporting: what a training worker sends the daemon (daemon/worker/reporting.py; issue 12)
#
# Every reporter method is one record kind. The local reporter applies records to the store directly; the HTTP
# reporter (cluster workers) journals them on disk and POSTs them in order to
# `/v1/fine_tuning/jobs/{id}/report/records` with the job's own token. A record with an `id` is applied at most
# once per job (a replay is a no-op); steps are idempotent by step number as well. A new reporter method is a
# new record class here, one branch in `Store.apply_report`, and one line in the union below.

REPORT_BATCH_MAX = 1000
ReportLevel = Literal["info", "warn", "error"]
WorkerOutcome = Literal["succeeded", "paused", "cancelled", "failed"]


class ReportRecordBase(StrictRequest):
    """`id`: unique per job, set by the HTTP reporter (its journal keeps it, so a replay carries the same id)."""

    id: str | None = Field(default=None, max_length=128)


Count = Annotated[int, Field(ge=0, le=INT64_MAX)]


def as_text(row: Mapping[str, Any], keys: tuple[str, ...], nullable: tuple[str, ...] = ()) -> dict[str, Any]:
    """A worker's row with `keys` as the wire and the store take them: text (None is "" unless `nullable`;
    a number or a message list becomes its str). The wire models themselves take only strings."""
    out = dict(row)
    for k in keys:
        if out.get(k) is None:
            out[k] = None if k in nullable else ""
        elif not isinstance(out[k], str):
            out[k] = str(out[k])
    return out


class ReportedSample(JsonTyped):
    """One training completion as a worker reports it (more fields, e.g. a tool trajectory, are kept as sent)."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    completion: str = ""
    reward: float | None = None
    sub_rewards: dict[str, float | None] = {}
    errors: dict[str, Any] = {}
    item: dict[str, Any] | None = None  # the dataset row it was graded against (re-scoring grades it again)
    output_messages: list[TrajectoryTurn] | None = None  # agent RFT: the episode (docs/agent-rft.md)
    stop_reason: EpisodeStop | None = None


class ReportedValidationRow(JsonTyped):
    """One validation row as a worker reports it (more fields are kept as sent)."""

    model_config = ConfigDict(extra="allow")

    row_index: Count | None = None
    prompt: str = ""
    reference: str | None = None
    output: str = ""
    reward: float | None = None
    sub_rewards: dict[str, float | None] = {}
    errors: dict[str, Any] = {}
    item: dict[str, Any] | None = None
    output_messages: list[TrajectoryTurn] | None = None  # agent RFT: the episode (docs/agent-rft.md)
    stop_reason: EpisodeStop | None = None


class ReportStarted(ReportRecordBase):
    """The worker is up: total steps, the hyperparameters it resolved, a line for the events."""

    kind: Literal["started"] = "started"
    total_steps: Count | None = None
    resolved_hyperparameters: ResolvedHyperparameters | None = None
    message: str | None = None


class ReportStep(ReportRecordBase):
    """One training step: its metric values and up to MAX_SAMPLES_PER_STEP sample completions."""

    kind: Literal["step"] = "step"
    step: Count
    values: dict[str, float | None] = {}
    samples: list[ReportedSample] = []
    total_steps: Count | None = None
    trained_tokens: Count | None = None


class ReportValidation(ReportRecordBase):
    """One validation pass (step 0 = the base model): every row's output and scores."""

    kind: Literal["validation"] = "validation"
    step: Count
    rows: list[ReportedValidationRow] = []
    summary: dict[str, float | None] | None = None


class ReportCheckpoint(ReportRecordBase):
    """A checkpoint saved at `step`; `location` is a local path or an fsspec URL on the cluster's storage."""

    kind: Literal["checkpoint"] = "checkpoint"
    step: Count
    location: str = Field(min_length=1, max_length=MAX_PATH_CHARS)
    metrics: dict[str, float | None] = {}


class ReportCheckpointDeleted(ReportRecordBase):
    """The worker deleted a checkpoint the keep rule let go."""

    kind: Literal["checkpoint_deleted"] = "checkpoint_deleted"
    checkpoint_id: str = Field(min_length=1, max_length=200)


class ReportEvent(ReportRecordBase):
    """A job event written by the worker (warnings, failures)."""

    kind: Literal["event"] = "event"
    message: str
    level: ReportLevel = "info"
    data: dict[str, Any] | None = None


class ReportFinish(ReportRecordBase):
    """How the worker ended, for the daemon to settle the job."""

    kind: Literal["finish"] = "finish"
    outcome: WorkerOutcome
    detail: str | None = None
    fine_tuned_model: str | None = None


class ReportAlarm(ReportRecordBase):
    """An alarm firing, or (`cleared`) its episode ending (daemon/health.py; issue 11)."""

    kind: Literal["alarm"] = "alarm"
    name: AlarmName
    severity: AlarmSeverity
    step: int | None = None
    value: float | None = None
    threshold: float | None = None
    message: str = Field(default="", max_length=4000)
    action: AlarmAction = "warn"
    grader: str | None = Field(default=None, max_length=256)
    cleared: bool = False


ReportRecord = Annotated[
    ReportStarted | ReportStep | ReportValidation | ReportCheckpoint | ReportCheckpointDeleted | ReportEvent
    | ReportFinish | ReportAlarm,
    Field(discriminator="kind"),
]


class ReportBatch(StrictRequest):
    """Records in the order the worker made them (applied in that order, each in its own transaction)."""

    records: list[ReportRecord] = Field(max_length=REPORT_BATCH_MAX)


class ReportControl(WireModel):
    """What the worker must know between steps: the job's status and a pending pause/cancel request."""

    status: JobStatus
    requested_action: str | None = None
    stacks_requested: int = Field(default=0, ge=0, description=(
        "How many times the daemon has asked this job's worker for every thread's stack (a `stalled` alarm on a "
        "cluster, where it cannot signal the process): a worker that sees the count grow writes the stacks of "
        "its processes into its log."))


class ReportAck(WireModel):
    """`applied` records were new; `duplicates` had been applied before (a replay); the job's control state."""

    applied: int
    duplicates: int
    control: ReportControl


class HealthHistoryStep(WireModel):
    step: int
    values: dict[str, float | None]


class HealthHistoryValidation(WireModel):
    step: int
    mean: float


class HealthHistory(WireModel):
    """What a resumed worker rebuilds its health monitor from (daemon/health.py), so an alarm building up before
    a pause is not forgotten: the health signals of the stored steps its windows need (the first ones, for
    entropy's baseline, and the latest ones) and every validation pass's mean, in step order."""

    steps: list[HealthHistoryStep] = []
    validations: list[HealthHistoryValidation] = []


class ReportJobState(WireModel):
    """What a (re)starting worker reads about its own job: attempt, resume point, steps already stored."""

    id: str
    status: JobStatus
    attempts: int = 0
    resume_from: str | None = None
    requested_action: str | None = None
    last_step: int | None = None
    validated_steps: list[int] = []
    #: relaunches after an out-of-memory error (`on_oom: retry_smaller`, several processes): each halves the
    #: per-device batch and doubles the accumulation (same global batch)
    oom_retries: int = 0
    health: HealthHistory = HealthHistory()


FineTuningJob.model_rebuild()
