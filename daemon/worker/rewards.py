"""The bridge from TRL's reward function to the job's grader (graders.BatchGrader).

Captures, per training step, a capped set of samples (prompt, completion, reward, sub-rewards) and the
grader's error counts and time, which the logging callback drains into the store with the step's metrics.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import graders
from daemon import metrics
from daemon.health import grader_time_limits as _limits
from daemon.text import message_text


def completion_text(completion: Any) -> str:
    """TRL hands conversational completions as [{"role": "assistant", "content": ...}]; plain ones as str."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        return message_text(completion[-1].get("content"))
    return ""


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n".join(message_text(m.get("content")) for m in prompt if isinstance(m, dict))
    return str(prompt)


def result_errors(result: Any) -> dict[str, Any]:
    """The flags a grader result raised (and their details), compactly; {} when it graded cleanly."""
    if not result.errors:
        return {}
    return {**dict.fromkeys(sorted(result.errors), True), **dict(result.details)}


def percentile(ordered: list[float], q: float) -> float:
    """The q-quantile of sorted values (nearest rank): cheap, and exact for the few rows of one step."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def grader_time_limits(spec: dict[str, Any]) -> dict[str, float]:
    """daemon.health.grader_time_limits with the sandbox's real wall-time limit for python graders."""
    return _limits(spec, python_limit_s=graders.SandboxLimits().wall_time_s)


class GraderReward:
    """A TRL reward function (`__call__(prompts, completions, **columns)`) scoring with the job's grader."""

    def __init__(self, grader_spec: dict[str, Any], name: str = "grader", samples_per_step: int = 8,
                 seed: int = 0) -> None:
        self.spec = grader_spec
        self.batch = graders.BatchGrader(graders.parse_grader(grader_spec))
        self.__name__ = name  # TRL names the reward column after the function: rewards/<name>/mean
        self.samples_per_step = samples_per_step
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.samples: list[dict[str, Any]] = []
        self.errors: Counter[str] = Counter()
        self.graded = 0
        self.errored = 0
        self.seconds = 0.0
        self.sub_sums: defaultdict[str, float] = defaultdict(float)
        self.sub_counts: Counter[str] = Counter()
        # per grader (the job's, and each sub-grader of a multi): seconds per row, rows with an error
        self.latencies: defaultdict[str, list[float]] = defaultdict(list)
        self.grader_errors: Counter[str] = Counter()

    def grade(self, outputs: list[str] | list[dict[str, Any]], items: list[dict[str, Any]]) -> graders.BatchResult:
        """Grade final answers (str) or whole episodes (the grader `sample` dicts of `Episode.grader_sample`)."""
        return self.batch.grade([o if isinstance(o, dict) else {"output_text": o} for o in outputs], items)

    def __call__(self, prompts: list[Any], completions: list[Any], item_json: list[str] | None = None,
                 episode: list[dict[str, Any]] | None = None, **_: Any) -> list[float]:
        """TRL's reward call; `episode` (from our rollout_func, rows with tools) holds each completion's episode,
        whose final answer is graded instead of the completion's text (which includes the tool results)."""
        started = time.perf_counter()
        episodes = episode if episode is not None and len(episode) == len(completions) else None
        outputs = [e["output_text"] for e in episodes] if episodes else [completion_text(c) for c in completions]
        items = [json.loads(j) for j in (item_json or ["{}"] * len(outputs))]
        result = self.grade(episodes or outputs, items)
        elapsed = time.perf_counter() - started
        with self.lock:
            self.seconds += elapsed
            self.graded += len(outputs)
            self.errored += result.error_count
            self.errors.update(result.errors)
            for name, values in result.sub_rewards.items():
                self.sub_sums[name] += sum(values)
                self.sub_counts[name] += len(values)
            self._count_graders(result.results)
            take = self.rng.sample(range(len(outputs)), min(self.samples_per_step - len(self.samples),
                                                              len(outputs))) if self.samples_per_step else []
            for i in sorted(take):
                r = result.results[i]
                sample = {"prompt": prompt_text(prompts[i]), "completion": outputs[i],
                          "reward": result.rewards[i], "sub_rewards": dict(r.sub_rewards or {}),
                          "errors": result_errors(r), "item": items[i]}  # a re-score grades it again
                if episodes:
                    sample["output_messages"] = episodes[i]["output_messages"]
                    sample["stop_reason"] = episodes[i].get("stop_reason")
                self.samples.append(sample)
        return [float(x) for x in result.rewards]

    def _count_graders(self, results: list[Any]) -> None:
        """Per-grader latency and error counts (the health signals grader_errors and grader_slow watch)."""
        top = self.__name__
        lat, errs = self.latencies[top], self.grader_errors
        for r in results:
            lat.append(r.execution_time)
            if r.errors:
                errs[top] += 1
            for name, sub in (r.sub_results or {}).items():
                self.latencies[name].append(sub.execution_time)
                if sub.errors:
                    errs[name] += 1

    def _grader_health(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, times in self.latencies.items():
            if not times:
                continue
            times.sort()
            values[metrics.grader_error_rate(name)] = self.grader_errors[name] / len(times)
            values[metrics.grader_latency_p50(name)] = percentile(times, 0.50)
            values[metrics.grader_latency_p95(name)] = percentile(times, 0.95)
        return values

    def drain(self) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """This step's samples and our grader metrics; resets for the next step."""
        with self.lock:
            values: dict[str, float] = {metrics.GRADING_S: self.seconds, metrics.GRADED: float(self.graded),
                                        metrics.ERRORED: float(self.errored),
                                        metrics.ERROR_RATE: self.errored / self.graded if self.graded else 0.0}
            for flag, n in self.errors.items():
                values[metrics.grader_error(flag)] = float(n)
            for name, total in self.sub_sums.items():
                values[metrics.grader_reward(name)] = total / max(1, self.sub_counts[name])
            values.update(self._grader_health())
            samples = self.samples
            self._reset()
        return samples, values

    def close(self) -> None:
        self.batch.close()
