"""Grader results shaped like OpenAI's grader run response (`/v1/fine_tuning/alpha/graders/run`)."""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

#: Shared read-only empties: most results have no errors, details or sub-results, and the
#: training loop builds hundreds of thousands of results a minute.
_NO_ERRORS: frozenset[str] = frozenset()
_EMPTY: Any = MappingProxyType({})

#: Every error flag OpenAI's `GraderRunResponse.metadata.errors` carries (the booleans).
ERROR_FLAGS: tuple[str, ...] = (
    "formula_parse_error",
    "invalid_variable_error",
    "model_grader_parse_error",
    "model_grader_refusal_error",
    "model_grader_server_error",
    "other_error",
    "python_grader_out_of_range_error",
    "python_grader_runtime_error",
    "python_grader_server_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
)

#: Flags that keep the (clamped) reward instead of zeroing it: the grader's value was used, bounded.
CLAMP_FLAGS: frozenset[str] = frozenset({"python_grader_out_of_range_error"})

#: Flags that carry a free-text companion field in the response.
DETAIL_FIELDS: dict[str, str] = {
    "model_grader_server_error": "model_grader_server_error_details",
    "python_grader_out_of_range_error": "python_grader_out_of_range_error_details",
    "python_grader_runtime_error": "python_grader_runtime_error_details",
    "python_grader_server_error": "python_grader_server_error_type",
}

_DETAILS_CAP = 4000


class GraderResult:
    """One grading of one sample: a reward, sub-rewards, and metadata with error flags.

    A plain slotted class rather than a pydantic model because the training loop builds
    hundreds of thousands of these per minute.
    """

    __slots__ = (
        "reward",
        "sub_rewards",
        "name",
        "type",
        "execution_time",
        "scores",
        "token_usage",
        "sampled_model_name",
        "errors",
        "_details",
        "model_grader_token_usage_per_model",
        "sub_results",
        "sandbox",
    )

    def __init__(
        self,
        reward: float,
        name: str,
        type: str,
        *,
        execution_time: float = 0.0,
        sub_rewards: dict[str, float] | None = None,
        scores: dict[str, Any] | None = None,
        token_usage: int | None = None,
        sampled_model_name: str | None = None,
        model_grader_token_usage_per_model: dict[str, Any] | None = None,
    ) -> None:
        self.reward = reward
        self.name = name
        self.type = type
        self.execution_time = execution_time
        self.sub_rewards: dict[str, float] = _EMPTY if sub_rewards is None else sub_rewards
        self.scores: dict[str, Any] = _EMPTY if scores is None else scores
        self.token_usage = token_usage
        self.sampled_model_name = sampled_model_name
        #: Error flags set on this result (a frozenset; replace it, never mutate it).
        self.errors: frozenset[str] = _NO_ERRORS
        self._details: dict[str, str] | None = None
        self.model_grader_token_usage_per_model: dict[str, Any] = (
            _EMPTY if model_grader_token_usage_per_model is None else model_grader_token_usage_per_model
        )
        #: A multi grader's per-sub-grader results (not part of the wire JSON).
        self.sub_results: dict[str, GraderResult] = _EMPTY
        #: How a python grader ran ("bubblewrap" or "off"); None for graders that run no user code.
        self.sandbox: str | None = None

    @classmethod
    def failure(cls, name: str, type: str, flag: str, detail: str | None = None) -> GraderResult:
        """A zero-reward result carrying one error flag (and its detail text, if the flag has one)."""
        result = cls(0.0, name, type)
        result.flag(flag, detail)
        return result

    def flag(self, flag: str, detail: str | None = None) -> None:
        """Record an error: the reward becomes 0 (kept, clamped, for CLAMP_FLAGS) and the flag is set."""
        if flag not in ERROR_FLAGS:
            raise ValueError(f"unknown error flag {flag!r}")
        self.errors = self.errors | {flag}
        if flag not in CLAMP_FLAGS:
            self.reward = 0.0
        if detail:
            self.add_detail(DETAIL_FIELDS.get(flag, "other_error_details"), detail)

    def add_detail(self, key: str, text: str) -> None:
        """Keep the first text given for a detail field (capped)."""
        if self._details is None:
            self._details = {}
        self._details.setdefault(key, text[-_DETAILS_CAP:])

    @property
    def details(self) -> dict[str, str]:
        """Error detail texts by response field name (read-only view)."""
        return MappingProxyType(self._details) if self._details else _EMPTY  # type: ignore[return-value]

    def errors_dict(self) -> dict[str, Any]:
        """The `metadata.errors` object: every flag as a boolean, plus the detail strings."""
        out: dict[str, Any] = {flag: flag in self.errors for flag in ERROR_FLAGS}
        for key in DETAIL_FIELDS.values():
            out[key] = self.details.get(key)
        return dict(sorted(out.items()))

    def sandbox_mode(self) -> str | None:
        """This result's sandbox mode, or the first a sub-grader ran under (a multi grader's python parts)."""
        if self.sandbox is not None:
            return self.sandbox
        return next((mode for sub in self.sub_results.values() if (mode := sub.sandbox_mode())), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of OpenAI's grader run response (plus `metadata.sandbox` where user code ran)."""
        out: dict[str, Any] = {
            "reward": _finite(self.reward),
            "sub_rewards": {k: _finite(v) for k, v in self.sub_rewards.items()},
            "metadata": {
                "name": self.name,
                "type": self.type,
                "errors": self.errors_dict(),
                "execution_time": self.execution_time,
                "scores": self._scores_with_details(),
                "token_usage": self.token_usage,
                "sampled_model_name": self.sampled_model_name,
            },
            "model_grader_token_usage_per_model": {
                k: dict(v) if isinstance(v, dict) else v for k, v in self.model_grader_token_usage_per_model.items()
            },
        }
        sandbox = self.sandbox_mode()
        if sandbox is not None:
            out["metadata"]["sandbox"] = sandbox
        return out

    def _scores_with_details(self) -> dict[str, Any]:
        """OpenAI's errors object has no slot for other_error's text, so it rides in `scores`."""
        if "other_error_details" not in self.details:
            return dict(self.scores)
        return {**self.scores, "other_error_details": self.details["other_error_details"]}

    def __repr__(self) -> str:
        flags = ",".join(sorted(self.errors))
        return f"GraderResult(name={self.name!r}, reward={self.reward!r}, errors=[{flags}])"


def _finite(value: Any) -> float:
    """JSON has no NaN/inf; the graders never produce them, but be safe at the boundary."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0
