"""Validation comparisons and re-scorings, computed from a job's stored rows (never from a live worker).

`compare_validation` turns two validation steps into `api.ValidationCompare` (daemon/stats.py's paired
bootstrap and sign test, overall and per sub-grader). `rescore` grades stored validation outputs (and, when
asked, stored training samples) again with another grader and keeps the result as a named re-scoring beside
the original scores, which it never writes. Both are called from a thread-pool thread, never on the event loop;
grading that needs torch runs in the daemon's helper process.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from daemon import api, stats
from daemon.errors import ApiError, conflict
from daemon.store import RowScore, Store

ScoreReader = Callable[[int], dict[int, RowScore]]


def scores_reader(store: Store, job_id: str, rescoring: Mapping[str, Any] | None) -> ScoreReader:
    """Per-step row scores: the original ones, or a named re-scoring's."""
    if rescoring is None:
        return lambda step: store.validation_scores(job_id, step)
    rescoring_id = str(rescoring["id"])
    return lambda step: store.rescored_validation(rescoring_id, step)


def compare_scores(base: Mapping[int, RowScore], other: Mapping[int, RowScore], resamples: int,
                   seed: int) -> tuple[api.PairedStats, dict[str, api.PairedStats]]:
    """Overall and per-sub-grader comparisons of two steps' row scores (rows present in both)."""
    overall = _paired(stats.compare_paired({k: v.reward for k, v in base.items()},
                                           {k: v.reward for k, v in other.items()}, resamples, seed))
    names = sorted({n for v in base.values() for n in v.sub_rewards}
                   & {n for v in other.values() for n in v.sub_rewards})
    per_grader: dict[str, api.PairedStats] = {}
    for name in names:
        b = {k: float(x) for k, v in base.items() if (x := v.sub_rewards.get(name)) is not None}
        o = {k: float(x) for k, v in other.items() if (x := v.sub_rewards.get(name)) is not None}
        per_grader[name] = _paired(stats.compare_paired(b, o, resamples, seed))
    return overall, per_grader


def _paired(c: stats.PairedComparison) -> api.PairedStats:
    return api.PairedStats(n=c.n, base_mean=c.base_mean, mean=c.mean, mean_diff=c.mean_diff, ci95=c.ci95,
                           wins=c.wins, losses=c.losses, ties=c.ties, p_value=c.p_value)


def compare_validation(store: Store, job_id: str, base_step: int, step: int, resamples: int, seed: int,
                       rescoring: Mapping[str, Any] | None = None) -> api.ValidationCompare:
    """`GET .../validation/compare`: the checks on steps are the route's; this reads and computes."""
    read = scores_reader(store, job_id, rescoring)
    overall, per_grader = compare_scores(read(base_step), read(step), resamples, seed)
    return api.ValidationCompare(job_id=job_id, base_step=base_step, step=step,
                                 rescoring=None if rescoring is None else str(rescoring["name"]),
                                 resamples=resamples, seed=seed, per_grader=per_grader,
                                 **overall.model_dump())


# ---------------------------------------------------------------------------------------------- re-scoring


def grade_outputs(grader: dict[str, Any], outputs: list[str] | list[str | dict[str, Any]],
                  items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grade outputs[i] against items[i] (in whichever process calls it): reward, sub-rewards, error flags each.

    An output is the final text, or (agent RFT) the grader `sample` of a stored episode: the final answer plus
    output_messages, tool_calls and stop_reason, as the worker graded it. Python graders run in the graders
    sandbox pool, as everywhere else; grading never raises for a grader error.
    """
    import graders

    with graders.BatchGrader(graders.parse_grader(grader)) as batch:
        result = batch.grade([o if isinstance(o, dict) else {"output_text": o} for o in outputs], items)
    name = str(grader.get("name") or "grader")
    scored = []
    for reward, r in zip(result.rewards, result.results, strict=True):
        errors = {**dict.fromkeys(sorted(r.errors), True), **dict(r.details)} if r.errors else {}
        scored.append({"reward": float(reward), "sub_rewards": dict(r.sub_rewards or {}) or {name: float(reward)},
                       "errors": errors})
    return scored


def episode_sample(output: str, turns: list[api.TrajectoryTurn] | None,
                   stop_reason: str | None) -> str | dict[str, Any]:
    """A stored output as the grader saw it: the text, or the episode's grader `sample` (docs/agent-rft.md)."""
    if turns is None:
        return output
    return {"output_text": output, "output_messages": [t.model_dump() for t in turns],
            "tool_calls": [c.model_dump() for c in api.flat_tool_calls(turns) or []], "stop_reason": stop_reason}


def default_name(store: Store, job_id: str, grader: Mapping[str, Any]) -> str:
    """The grader's name made a valid re-scoring name, with -2, -3, ... until it is free."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(grader.get("name") or "rescore")).strip("-.")[:56] or "rescore"
    if not base[0].isalnum():
        base = "r" + base
    name, n = base, 1
    while store.rescoring_row(job_id, name) is not None:
        n += 1
        name = f"{base}-{n}"
    return name


def chosen_steps(available: list[int], requested: list[int] | None, base_step: int) -> list[int]:
    """The validation steps to re-score: the requested ones (each must exist) plus the base step when it exists."""
    if requested is None:
        return list(available)
    missing = sorted(set(requested) - set(available))
    if missing:
        raise ApiError(404, f"No validation at step {missing[0]} (validated steps: {available})", param="steps",
                       code="validation_not_found")
    return sorted(set(requested) | ({base_step} & set(available)))


def _read_jsonl_rows(path: str | None) -> list[dict[str, Any]]:
    """A stored dataset's rows as the worker reads them (blank lines skipped); [] when the file is gone."""
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def _item_of(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "messages"}


def _prompt_key(messages: Any) -> str:
    """A training row's prompt as the reward bridge stores it for a sample (message texts joined by newlines)."""
    from daemon.worker.rewards import prompt_text

    return prompt_text(messages)


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _grader_means(scored: list[dict[str, Any]]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for s in scored:
        for name, value in s["sub_rewards"].items():
            if value is not None:
                sums.setdefault(name, []).append(float(value))
    return {name: math.fsum(v) / len(v) for name, v in sums.items()}


class RescoreJob:
    """One re-scoring: what to grade (read from the store), grading, and what to keep."""

    def __init__(self, store: Store, job_row: Mapping[str, Any], body: api.RescoreRequest) -> None:
        self.store = store
        self.job_id = str(job_row["id"])
        self.body = body
        self.snapshot = api.JobSnapshot.from_json(job_row["snapshot"]) if job_row.get("snapshot") else None
        available = store.validation_steps(self.job_id)
        self.steps = chosen_steps(available, body.steps, body.base_step)
        if not self.steps and not body.samples:
            raise conflict(f"Job {self.job_id} has no validation rows to re-score yet (pass samples to re-grade "
                           "training samples).", param="fine_tuning_job_id", code="nothing_to_rescore")
        self.name = body.name or default_name(store, self.job_id, body.grader)
        if body.name and store.rescoring_row(self.job_id, body.name) is not None:
            raise conflict(f"Job {self.job_id} already has a re-scoring named {body.name!r} (re-scorings are never "
                           "overwritten; pick another name).", param="name", code="rescoring_exists")
        self.outputs: list[str | dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.keys: list[tuple[str, int, int, float]] = []  # (kind, step, row key, original reward)
        self.without_item = 0

    def collect(self) -> None:
        """The outputs to grade and the items they were graded against (stored, else from the job's dataset)."""
        valid_rows: list[dict[str, Any]] | None = None
        for step in self.steps:
            for r in self.store.validation_rows(self.job_id, step):
                item = r.item
                if item is None:
                    if valid_rows is None:
                        path = self.snapshot.validation_file.path if self.snapshot and self.snapshot.validation_file \
                            else None
                        valid_rows = _read_jsonl_rows(path)
                    item = _item_of(valid_rows[r.row_index]) if r.row_index < len(valid_rows) else {}
                self._add("validation", step, r.row_index, r.reward,
                          episode_sample(r.output, r.output_messages, r.stop_reason), item)
        if self.body.samples:
            by_prompt: dict[str, dict[str, Any]] | None = None
            for s in self.store.sample_rows(self.job_id):
                item = s["item"]
                if item is None:
                    if by_prompt is None:
                        path = self.snapshot.training_file.path if self.snapshot else None
                        by_prompt = {_prompt_key(row.get("messages") or []): _item_of(row)
                                     for row in _read_jsonl_rows(path)}
                    item = by_prompt.get(s["prompt"])
                    if item is None:
                        self.without_item += 1
                        item = {}
                self._add("sample", s["step"], s["id"], s["reward"],
                          episode_sample(s["completion"], s.get("output_messages"), s.get("stop_reason")), item)

    def _add(self, kind: str, step: int, key: int, original: float, output: str | dict[str, Any],
             item: dict[str, Any]) -> None:
        self.keys.append((kind, step, key, float(original)))
        self.outputs.append(output)
        self.items.append(item)

    def keep(self, scored: list[dict[str, Any]], started: float) -> api.Rescoring:
        """Store the re-scoring (409 if its name was taken meanwhile) and return it."""
        rescoring_id = "rescore-" + secrets.token_hex(8)
        rows = [{"kind": kind, "step": step, "row_key": key, **s}
                for (kind, step, key, _), s in zip(self.keys, scored, strict=True)]
        shown = api.redact_secrets(self.body.grader)  # the grader's headers are not kept: only shown masked
        result = api.Rescoring(id=rescoring_id, job_id=self.job_id, name=self.name, created_at=int(time.time()),
                               grader=shown, steps=self._step_results(scored),
                               samples=self._samples_result(scored) if self.body.samples else None,
                               compare=self._compare(scored), elapsed_s=round(time.perf_counter() - started, 3))
        stored = {"id": rescoring_id, "job_id": self.job_id, "name": self.name, "created_at": result.created_at,
                  "grader": json.dumps(shown), "result": result.model_dump_json()}
        if not self.store.insert_rescoring(stored, rows):
            raise conflict(f"Job {self.job_id} already has a re-scoring named {self.name!r}.", param="name",
                           code="rescoring_exists")
        return result

    def _of(self, scored: list[dict[str, Any]], kind: str,
            step: int | None = None) -> list[tuple[float, dict[str, Any]]]:
        return [(orig, s) for (k, st, _, orig), s in zip(self.keys, scored, strict=True)
                if k == kind and (step is None or st == step)]

    def _step_results(self, scored: list[dict[str, Any]]) -> list[api.RescoreStep]:
        out = []
        for step in self.steps:
            pairs = self._of(scored, "validation", step)
            out.append(api.RescoreStep(step=step, rows=len(pairs), mean=_mean([s["reward"] for _, s in pairs]),
                                       original_mean=_mean([o for o, _ in pairs]),
                                       rows_with_errors=sum(1 for _, s in pairs if s["errors"]),
                                       per_grader=_grader_means([s for _, s in pairs])))
        return out

    def _samples_result(self, scored: list[dict[str, Any]]) -> api.RescoreSamples:
        pairs = self._of(scored, "sample")
        return api.RescoreSamples(samples=len(pairs), mean=_mean([s["reward"] for _, s in pairs]),
                                  original_mean=_mean([o for o, _ in pairs]),
                                  rows_with_errors=sum(1 for _, s in pairs if s["errors"]),
                                  without_item=self.without_item, per_grader=_grader_means([s for _, s in pairs]))

    def _compare(self, scored: list[dict[str, Any]]) -> api.ValidationCompare | None:
        """Base step vs the last re-scored step, both with the new grader (None without two such steps)."""
        base = self.body.base_step
        later = [s for s in self.steps if s != base]
        if base not in self.steps or not later:
            return None

        def at(step: int) -> dict[int, RowScore]:
            return {key: RowScore(s["reward"], s["sub_rewards"], s["errors"])
                    for (kind, st, key, _), s in zip(self.keys, scored, strict=True)
                    if kind == "validation" and st == step}

        overall, per_grader = compare_scores(at(base), at(later[-1]), stats.DEFAULT_RESAMPLES, stats.DEFAULT_SEED)
        return api.ValidationCompare(job_id=self.job_id, base_step=base, step=later[-1], rescoring=self.name,
                                     resamples=stats.DEFAULT_RESAMPLES, seed=stats.DEFAULT_SEED,
                                     per_grader=per_grader, **overall.model_dump())


def rescoring_object(row: Mapping[str, Any]) -> api.Rescoring:
    """A stored re-scoring as shown (masked again: rows from before masking kept the grader's headers)."""
    r = api.Rescoring.model_validate_json(row["result"])
    return r.model_copy(update={"grader": api.redact_secrets(r.grader)})
