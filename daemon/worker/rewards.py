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
from dataclasses import dataclass, field
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


@dataclass
class Tally:
    """One process's grading during one training step: raw counts, so several ranks' tallies add up."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    graded: int = 0
    errored: int = 0
    seconds: float = 0.0
    sub_sums: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    sub_counts: Counter[str] = field(default_factory=Counter)
    # per grader (the job's, and each sub-grader of a multi): seconds per row, rows with an error
    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    grader_errors: Counter[str] = field(default_factory=Counter)

    @staticmethod
    def merge(tallies: list[Tally]) -> Tally:
        """Every rank's counts added up; `seconds` is the slowest rank's (they grade at the same time)."""
        if len(tallies) == 1:
            return tallies[0]
        out = Tally()
        for t in tallies:
            out.samples += t.samples
            out.errors.update(t.errors)
            out.graded += t.graded
            out.errored += t.errored
            out.seconds = max(out.seconds, t.seconds)
            for name, v in t.sub_sums.items():
                out.sub_sums[name] += v
            out.sub_counts.update(t.sub_counts)
            for name, times in t.latencies.items():
                out.latencies[name] += times
            out.grader_errors.update(t.grader_errors)
        return out


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
        self.tally = Tally()

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
            t = self.tally
            t.seconds += elapsed
            t.graded += len(outputs)
            t.errored += result.error_count
            t.errors.update(result.errors)
            for name, values in result.sub_rewards.items():
                t.sub_sums[name] += sum(values)
                t.sub_counts[name] += len(values)
            self._count_graders(t, result.results)
            take = self.rng.sample(range(len(outputs)), min(self.samples_per_step - len(t.samples),
                                                              len(outputs))) if self.samples_per_step else []
            for i in sorted(take):
                r = result.results[i]
                sample = {"prompt": prompt_text(prompts[i]), "completion": outputs[i],
                          "reward": result.rewards[i], "sub_rewards": dict(r.sub_rewards or {}),
                          "errors": result_errors(r), "item": items[i]}  # a re-score grades it again
                if episodes:
                    sample["output_messages"] = episodes[i]["output_messages"]
                    sample["stop_reason"] = episodes[i].get("stop_reason")
                t.samples.append(sample)
        return [float(x) for x in result.rewards]

    def _count_graders(self, t: Tally, results: list[Any]) -> None:
        """Per-grader latency and error counts (the health signals grader_errors and grader_slow watch)."""
        top = self.__name__
        lat, errs = t.latencies[top], t.grader_errors
        for r in results:
            lat.append(r.execution_time)
            if r.errors:
                errs[top] += 1
            for name, sub in (r.sub_results or {}).items():
                t.latencies[name].append(sub.execution_time)
                if sub.errors:
                    errs[name] += 1

    def take(self) -> Tally:
        """This step's tally (reset for the next): what `summarize` turns into samples and metrics. Several
        ranks each take theirs, and rank 0 summarizes them all (torch.distributed.gather_object)."""
        with self.lock:
            tally = self.tally
            self._reset()
        return tally

    def summarize(self, tallies: list[Tally]) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """The step's samples (at most `samples_per_step`, drawn from every rank's) and grader metrics over
        every rank's rows; grading time is the slowest rank's (they grade at the same time)."""
        t = Tally.merge(tallies)
        values: dict[str, float] = {metrics.GRADING_S: t.seconds,
                                    metrics.GRADED: float(t.graded), metrics.ERRORED: float(t.errored),
                                    metrics.ERROR_RATE: t.errored / t.graded if t.graded else 0.0}
        for flag, n in t.errors.items():
            values[metrics.grader_error(flag)] = float(n)
        for name, total in t.sub_sums.items():
            values[metrics.grader_reward(name)] = total / max(1, t.sub_counts[name])
        for name, times in t.latencies.items():
            if not times:
                continue
            times.sort()
            values[metrics.grader_error_rate(name)] = t.grader_errors[name] / len(times)
            values[metrics.grader_latency_p50(name)] = percentile(times, 0.50)
            values[metrics.grader_latency_p95(name)] = percentile(times, 0.95)
        samples = t.samples
        if len(tallies) > 1 and len(samples) > self.samples_per_step:
            keep = sorted(self.rng.sample(range(len(samples)), self.samples_per_step))
            samples = [samples[i] for i in keep]
        return samples, values

    def drain(self) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """This step's samples and our grader metrics (one process); resets for the next step."""
        return self.summarize([self.take()])

    def close(self) -> None:
        self.batch.close()
