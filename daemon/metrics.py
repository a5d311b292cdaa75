"""The metric registry: every number a job records, named once (key, label, format, kind, what it means).

The worker writes per-step metrics under these keys (TRL's own names plus ours), the store reads the train
reward from them, and the reward chart, the metrics table, `rft-tui jobs metrics` (and `--keys`) and the demo
read labels and formats from here. docs/metrics.md is this table in prose. Standard library only: the CLI and
TUI import it, and they never import torch.

Adding a metric is one line in `METRICS`. A key with a `{placeholder}` names a family (`rewards/{grader}/mean`:
one key per grader). A key the registry does not know (a newer TRL's) still shows, with a generic format.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

#: train: the learning signal; validation: the held-out score; health: signs that training goes wrong;
#: speed: where the time goes.
Kind = Literal["train", "validation", "health", "speed"]
KINDS: tuple[Kind, ...] = ("train", "validation", "health", "speed")


@dataclass(frozen=True)
class Metric:
    """One metric key (or key family) and how to show it."""

    key: str  # as stored in a step's values; `{name}` parts match one path segment
    label: str  # short column / legend label (may use the key's placeholders)
    fmt: str  # Python format spec for one value: ".3f", ".2e", ".1%", ".0f", ...
    kind: Kind
    description: str
    unit: str = ""
    source: Literal["trl", "rft-tui"] = "trl"  # who writes it: TRL's GRPOTrainer logs, or our worker
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.key))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def is_family(self) -> bool:
        return "{" in self.key

    def label_for(self, key: str) -> str:
        """The label with the key's placeholders filled in (`rewards/exact/mean` -> `exact`)."""
        m = self.pattern.match(key)
        return self.label.format(**m.groupdict()) if m and self.is_family else self.label

    def format(self, value: float | None) -> str:
        """One value as the tables show it: `-` for none, `nan`/`inf` as such, else by `fmt`."""
        if value is None:
            return "-"
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return format(value, self.fmt)


def _trl(key: str, label: str, fmt: str, kind: Kind, description: str, unit: str = "") -> Metric:
    return Metric(key, label, fmt, kind, description, unit, "trl")


def _ours(key: str, label: str, fmt: str, kind: Kind, description: str, unit: str = "") -> Metric:
    return Metric(key, label, fmt, kind, description, unit, "rft-tui")


METRICS: tuple[Metric, ...] = (
    # ---- train: the learning signal (TRL's names; logged once per optimizer step)
    _trl("reward", "reward", ".3f", "train", "Mean reward of the step's completions (the grader's combined score)."),
    _trl("reward_std", "r_std", ".3f", "train", "Standard deviation of those rewards."),
    _trl("rewards/{grader}/mean", "{grader}", ".3f", "train",
         "Mean reward per grader: TRL's for the reward function, ours for each sub-grader of a multi grader."),
    _trl("rewards/{grader}/std", "{grader} std", ".3f", "train", "Standard deviation of that grader's rewards."),
    _trl("loss", "loss", "#.4g", "train", "GRPO loss of the step (near 0 is normal: advantages are centred)."),
    _trl("policy_loss", "policy_loss", "#.4g", "train", "The policy part of the loss (some loss types)."),
    _trl("kl", "kl", "#.4g", "train", "KL divergence to the base model (logged only when beta > 0)."),
    _trl("learning_rate", "lr", ".2e", "train", "Learning rate used at this step (the scheduler's value)."),
    _trl("epoch", "epoch", ".2f", "train", "Passes over the training file so far (fractional)."),
    _trl("num_tokens", "tokens", ".0f", "train", "Tokens seen so far, prompts and completions.", "tokens"),
    # ---- health: signs that training goes wrong
    _trl("grad_norm", "grad", "#.3g", "health", "Gradient norm before clipping; spikes precede divergence."),
    _trl("frac_reward_zero_std", "zero_std", ".1%", "health",
         "Share of prompts whose completions all scored the same: no learning signal from them."),
    _trl("entropy", "entropy", ".3f", "health", "Mean token entropy of the completions; a collapse to 0 is a warning."),
    _trl("completions/mean_length", "len", ".1f", "health", "Mean completion length.", "tokens"),
    _trl("completions/min_length", "len_min", ".0f", "health", "Shortest completion.", "tokens"),
    _trl("completions/max_length", "len_max", ".0f", "health", "Longest completion.", "tokens"),
    _trl("completions/clipped_ratio", "clipped", ".1%", "health",
         "Share of completions cut at max_completion_length (no end of sequence)."),
    _trl("completions/mean_terminated_length", "len_term", ".1f", "health",
         "Mean length of the completions that ended on their own.", "tokens"),
    _trl("completions/min_terminated_length", "len_term_min", ".0f", "health",
         "Shortest completion that ended on its own.", "tokens"),
    _trl("completions/max_terminated_length", "len_term_max", ".0f", "health",
         "Longest completion that ended on its own.", "tokens"),
    _trl("clip_ratio/low_mean", "clip_low", ".1%", "health", "Share of tokens clipped at the low ratio bound."),
    _trl("clip_ratio/high_mean", "clip_high", ".1%", "health", "Share of tokens clipped at the high ratio bound."),
    _trl("clip_ratio/region_mean", "clip", ".1%", "health", "Share of tokens clipped at either bound."),
    _trl("clip_ratio/low_min", "clip_low_min", ".1%", "health", "Lowest per-process low-clip share."),
    _trl("clip_ratio/high_max", "clip_high_max", ".1%", "health", "Highest per-process high-clip share."),
    _trl("tools/call_frequency", "tool_calls", ".2f", "health", "Tool calls per completion (rows with tools)."),
    _trl("tools/failure_frequency", "tool_fail", ".1%", "health", "Share of tool calls that failed."),
    _trl("sampling/sampling_logp_difference/mean", "logp_diff", "#.3g", "health",
         "Mean log-prob gap between the vLLM sampler and the trained model (use_vllm)."),
    _trl("sampling/sampling_logp_difference/max", "logp_diff_max", "#.3g", "health", "Largest such gap (use_vllm)."),
    _trl("sampling/importance_sampling_ratio/min", "is_min", "#.3g", "health", "Smallest importance ratio (use_vllm)."),
    _trl("sampling/importance_sampling_ratio/mean", "is_mean", "#.3g", "health", "Mean importance ratio (use_vllm)."),
    _trl("sampling/importance_sampling_ratio/max", "is_max", "#.3g", "health", "Largest importance ratio (use_vllm)."),
    _ours("grader/graded", "graded", ".0f", "health", "Completions graded this step."),
    _ours("grader/errored", "grader_err", ".0f", "health", "Completions whose grading raised an error (scored 0)."),
    _ours("grader/error_rate", "err_rate", ".1%", "health", "Share of completions with a grader error."),
    _ours("grader/errors/{flag}", "{flag}", ".0f", "health",
          "Completions with this OpenAI grader error flag (python_grader_runtime_error, ...)."),
    # ---- agent RFT (rows with tools): how episodes use their tools (train: the step's episodes)
    _ours("tools/call_rate", "tool_use", ".1%", "train", "Share of episodes that called at least one tool."),
    _ours("tools/calls_per_episode", "calls/ep", ".2f", "train", "Tool calls per episode (all turns)."),
    _ours("tools/episode_turns", "turns/ep", ".2f", "train", "Model turns per episode."),
    _ours("tools/error_rate", "tool_err", ".1%", "health",
          "Share of tool calls that failed: malformed, unknown tool, bad arguments, HTTP error, timeout."),
    _ours("tools/failure_rate", "tool_fail", ".1%", "health",
          "Share of tool calls that failed because the tool did (HTTP error, timeout, unreachable, bad answer, "
          "python tool error); the model's own mistakes (malformed calls, unknown tools, bad arguments) excluded."),
    _ours("tools/errors/{kind}", "{kind}", ".0f", "health",
          "Failed tool calls of one kind this step: malformed_call, unknown_tool, bad_arguments, http_error, timeout, "
          "unreachable, bad_answer, python_error."),
    _ours("tools/latency_p50_ms", "tool p50", ".0f", "speed", "Median wall time of a tool call (retries included).",
          "ms"),
    _ours("tools/latency_p95_ms", "tool p95", ".0f", "speed", "95th percentile of tool call wall time.", "ms"),
    _ours("tools/max_steps_share", "max_steps", ".1%", "health",
          "Share of episodes cut at max_episode_steps (still calling tools when their turns ran out)."),
    _ours("tools/token_budget_share", "tok_budget", ".1%", "health",
          "Share of episodes cut at max_completion_length tokens (tool results count against it)."),
    _ours("grader/{grader}/error_rate", "{grader} err", ".1%", "health",
          "Share of this step's rows on which this grader (or sub-grader of a multi grader) raised an error."),
    _ours("grader/{grader}/latency_p50_s", "{grader} p50", ".3f", "health",
          "Median time this grader took for one row this step.", "s"),
    _ours("grader/{grader}/latency_p95_s", "{grader} p95", ".3f", "health",
          "95th percentile of this grader's time per row this step (grader_slow compares it with the time "
          "limit).", "s"),
    _ours("train_valid_gap", "gap", "+.3f", "health",
          "Train reward smoothed over the last 10 steps minus the latest validation reward (reward hacking, "
          "overfitting); empty until the first validation."),
    # ---- speed: where each step's time goes
    _ours("step_wall_s", "step s", ".2f", "speed", "Wall time of the step, sampling to optimizer update.", "s"),
    _ours("sampling_s", "sample s", ".2f", "speed", "Of which generating completions (grading excluded).", "s"),
    _ours("grading_s", "grade s", ".2f", "speed", "Of which grading them.", "s"),
    _ours("training_s", "train s", ".2f", "speed", "Of which the forward/backward pass and the update.", "s"),
    _ours("validation_s", "valid s", ".2f", "speed", "Validation run just before this step (0 most steps).", "s"),
    _ours("tokens_per_s", "tok/s", ".0f", "speed", "Tokens processed per second of step wall time.", "tokens/s"),
    _trl("step_time", "trl step s", ".2f", "speed", "TRL's own step timer (without our validation).", "s"),
    # ---- validation: greedy outputs on the held-out rows (step 0 = the base model), per validation
    _ours("valid_reward_mean", "valid", ".3f", "validation", "Mean reward over the validation rows."),
    _ours("valid/{grader}/mean", "valid {grader}", ".3f", "validation", "Mean validation reward per grader."),
    _ours("valid_pass_rate", "valid pass", ".1%", "validation", "Share of validation rows with reward 1.0."),
    _ours("valid_grader_errors", "valid err", ".0f", "validation", "Validation rows with a grader error."),
    _ours("valid/tools/{stat}", "valid {stat}", "#.4g", "validation",
          "The tools/* numbers over the validation episodes (calls_per_episode, error_rate, latency_p50_ms, ...)."),
    _ours("valid/tools/errors/{kind}", "valid {kind}", ".0f", "validation",
          "Failed tool calls of one kind over the validation episodes."),
)

_EXACT: dict[str, Metric] = {m.key: m for m in METRICS if not m.is_family}
_FAMILIES: tuple[Metric, ...] = tuple(m for m in METRICS if m.is_family)

# Keys code reads or writes by name (never a string literal elsewhere).
TRAIN_REWARD = "reward"
LEARNING_RATE = "learning_rate"
NUM_TOKENS = "num_tokens"
STEP_WALL_S = "step_wall_s"
SAMPLING_S = "sampling_s"
GRADING_S = "grading_s"
TRAINING_S = "training_s"
VALIDATION_S = "validation_s"
TOKENS_PER_S = "tokens_per_s"
VALID_REWARD_MEAN = "valid_reward_mean"
VALID_PASS_RATE = "valid_pass_rate"
VALID_GRADER_ERRORS = "valid_grader_errors"
GRADED, ERRORED, ERROR_RATE = "grader/graded", "grader/errored", "grader/error_rate"
TOOL_CALL_RATE = "tools/call_rate"
TOOL_CALLS_PER_EPISODE = "tools/calls_per_episode"
TOOL_EPISODE_TURNS = "tools/episode_turns"
TOOL_ERROR_RATE = "tools/error_rate"
TOOL_FAILURE_RATE = "tools/failure_rate"
TOOL_LATENCY_P50_MS = "tools/latency_p50_ms"
TOOL_LATENCY_P95_MS = "tools/latency_p95_ms"
TOOL_MAX_STEPS_SHARE = "tools/max_steps_share"
TOOL_TOKEN_BUDGET_SHARE = "tools/token_budget_share"


def tool_errors(kind: str) -> str:
    """`tools/errors/<kind>`: failed tool calls of one kind in a step."""
    return f"tools/errors/{kind}"


def valid_tool_metric(key: str) -> str:
    """`tools/error_rate` -> `valid/tools/error_rate`: a tool number over the validation episodes."""
    return f"valid/{key}"

# health signals the alarms (daemon/health.py) watch
LOSS = "loss"
GRAD_NORM = "grad_norm"
FRAC_REWARD_ZERO_STD = "frac_reward_zero_std"
CLIPPED_RATIO = "completions/clipped_ratio"
ENTROPY = "entropy"
KL = "kl"
TRAIN_VALID_GAP = "train_valid_gap"

#: The columns the metrics table (TUI) and `rft-tui jobs metrics` show by default, in order.
DEFAULT_COLUMNS: tuple[str, ...] = ("reward", "reward_std", TOOL_CALL_RATE, "loss", "kl", "learning_rate", "grad_norm",
                                    "completions/mean_length", "frac_reward_zero_std", "step_wall_s")


_GRADER_REWARD = next(m for m in _FAMILIES if m.key == "rewards/{grader}/mean")


def grader_reward(name: str) -> str:
    """`rewards/<name>/mean`: a grader's mean train reward (TRL's key for a reward function)."""
    return f"rewards/{name}/mean"


def grader_error(flag: str) -> str:
    return f"grader/errors/{flag}"


def grader_error_rate(grader: str) -> str:
    return f"grader/{grader}/error_rate"


def grader_latency_p50(grader: str) -> str:
    return f"grader/{grader}/latency_p50_s"


def grader_latency_p95(grader: str) -> str:
    return f"grader/{grader}/latency_p95_s"


_GRADER_HEALTH = re.compile(r"^grader/(?P<grader>[^/]+)/(?:error_rate|latency_p50_s|latency_p95_s)$")


def grader_of_health(key: str) -> str | None:
    """The grader a per-grader health key names (`grader/exact/error_rate` -> `exact`), else None."""
    m = _GRADER_HEALTH.match(key)
    return m.group("grader") if m and m.group("grader") != "errors" else None


def valid_grader_reward(name: str) -> str:
    return f"valid/{name}/mean"


def grader_of(key: str) -> str | None:
    """The grader a per-grader train reward key names (`rewards/exact/mean` -> `exact`), else None."""
    m = _GRADER_REWARD.pattern.match(key)
    return m.group("grader") if m else None


def lookup(key: str) -> Metric | None:
    """The registered metric for `key` (exact, or the family it belongs to), or None."""
    found = _EXACT.get(key)
    if found is not None:
        return found
    return next((m for m in _FAMILIES if m.pattern.match(key)), None)


def metric(key: str) -> Metric:
    """`lookup`, or a generic entry for a key nobody registered (a newer library's), so it still shows."""
    return lookup(key) or Metric(key, key, "#.4g", "train", "(not in the registry)", source="trl")


def label(key: str) -> str:
    return metric(key).label_for(key)


def format_value(key: str, value: float | None) -> str:
    """One value of `key` as tables and the CLI show it (learning rates in scientific notation, shares as %)."""
    return metric(key).format(value)


def unregistered(keys: Iterable[str]) -> list[str]:
    """The keys the registry does not know (tests use it on what a worker wrote)."""
    return sorted(k for k in keys if lookup(k) is None)


def column_keys(sample: dict[str, float | None], limit: int) -> list[str]:
    """The metrics worth a column: the defaults in order, then per-grader rewards, then the rest, `limit` in all."""
    keys = [k for k in DEFAULT_COLUMNS if k in sample]
    graders = sorted(k for k in sample if grader_of(k) is not None)
    rest = sorted(k for k in sample if k not in keys and k not in graders)
    return (keys + graders + rest)[:limit]
