"""OpenAI's grader endpoints: POST /v1/fine_tuning/alpha/graders/run and /validate.

Declarative and python graders run in the daemon (python ones in the graders sandbox pool). Graders that
need torch (`graders.needs_heavy_libraries`: `cosine` similarity, local `hf:` judges) run in a separate process,
so the daemon itself never imports torch.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import threading
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from daemon import api
from daemon.jobs import validate_grader_spec
from daemon.routes import errors

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders")

_heavy_pool: concurrent.futures.ProcessPoolExecutor | None = None
_heavy_lock = threading.Lock()


def _heavy_executor() -> concurrent.futures.ProcessPoolExecutor:
    global _heavy_pool
    with _heavy_lock:
        if _heavy_pool is None:
            _heavy_pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return _heavy_pool


def in_helper_process(fn: Any, *args: Any, timeout: float) -> Any:
    """Run `fn(*args)` in the torch-capable helper process; a crashed helper is replaced on the next call."""
    try:
        return _heavy_executor().submit(fn, *args).result(timeout=timeout)
    except concurrent.futures.process.BrokenProcessPool:
        shutdown_heavy_pool()
        raise


def shutdown_heavy_pool() -> None:
    global _heavy_pool
    with _heavy_lock:
        if _heavy_pool is not None:
            _heavy_pool.shutdown(wait=False, cancel_futures=True)
            _heavy_pool = None


def grade_once(grader: dict[str, Any], sample: str, item: dict[str, Any]) -> dict[str, Any]:
    """Run one grader on one sample (in whichever process calls it); the result as OpenAI's JSON."""
    import graders

    return graders.run_grader(graders.parse_grader(grader), sample, item).to_dict()


def _run(body: api.GraderRunRequest) -> dict[str, Any]:
    import graders

    validate_grader_spec(body.grader, param="grader")
    item = dict(body.item or {})
    if body.reference_answer is not None:
        item.setdefault("reference_answer", body.reference_answer)
    if graders.needs_heavy_libraries(body.grader):
        return in_helper_process(grade_once, body.grader, body.model_sample, item, timeout=600)
    return grade_once(body.grader, body.model_sample, item)


@router.post("/run", response_model=api.GraderRunResponse, responses=errors(400))
async def run(body: api.GraderRunRequest) -> dict[str, Any]:
    return await run_in_threadpool(_run, body)


def _validate(body: api.GraderValidateRequest) -> api.GraderValidateResponse:
    import graders

    validate_grader_spec(body.grader, param="grader")
    fields = sorted(graders.template_item_fields(graders.parse_grader(body.grader)))
    return api.GraderValidateResponse(grader=body.grader, errors=[], item_fields=fields)


@router.post("/validate", response_model=api.GraderValidateResponse, responses=errors(400))
async def validate(body: api.GraderValidateRequest) -> api.GraderValidateResponse:
    return await run_in_threadpool(_validate, body)


ANSWER_FIELDS = ("answer", "reference_answer", "reference", "output", "completion")


def grade_file(grader: dict[str, Any], path: str, file_id: str, field: str | None, limit: int) -> dict[str, Any]:
    """Grade one column of a stored JSONL file (in whichever process calls it); the report as JSON."""
    import json
    import math
    import time

    import graders

    started = time.perf_counter()
    samples: list[str] = []
    items: list[dict[str, Any]] = []
    lines: list[int] = []
    rows = missing = 0
    chosen = field
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if rows >= limit:
                break
            rows += 1
            try:
                row = json.loads(line)
            except ValueError:
                missing += 1
                continue
            if chosen is None:
                chosen = next((k for k in ANSWER_FIELDS if k in row), None)
            if chosen is None or chosen not in row:
                missing += 1
                continue
            value = row[chosen]
            samples.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
            items.append(row)
            lines.append(lineno)
    with graders.BatchGrader(graders.parse_grader(grader)) as batch:
        result = batch.grade(samples, items)
    rewards = result.rewards
    n = len(rewards)
    mean = sum(rewards) / n if n else None
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / n) if n and mean is not None else None
    bins = [0] * 10
    for r in rewards:
        bins[min(9, max(0, int(r * 10)))] += 1
    order = sorted(range(n), key=lambda i: (rewards[i], lines[i]))[:5]
    report = api.GraderTestReport(
        file_id=file_id, field=chosen or "", rows=rows, graded=n, missing_field=missing,
        reward_mean=mean, reward_std=std, reward_min=min(rewards) if n else None,
        reward_max=max(rewards) if n else None, pass_rate=sum(1 for r in rewards if r >= 1.0) / n if n else None,
        histogram=[(round(i / 10, 1), c) for i, c in enumerate(bins)], errors=dict(result.errors),
        rows_with_errors=result.error_count,
        sub_reward_means={k: sum(v) / len(v) for k, v in result.sub_rewards.items() if v},
        lowest=[api.GraderTestExample(line=lines[i], sample=samples[i][:200], reward=rewards[i],
                                      errors=sorted(result.results[i].errors)) for i in order],
        elapsed_s=round(time.perf_counter() - started, 3),
    )
    return report.model_dump(mode="json")


def _test(body: api.GraderTestRequest, path: str) -> dict[str, Any]:
    import graders

    validate_grader_spec(body.grader, param="grader")
    if graders.needs_heavy_libraries(body.grader):
        return in_helper_process(grade_file, body.grader, path, body.file_id, body.field, body.limit, timeout=3600)
    return grade_file(body.grader, path, body.file_id, body.field, body.limit)


@router.post("/test", response_model=api.GraderTestReport, responses=errors(400, 404, 503))
async def test(request: Request, body: api.GraderTestRequest) -> dict[str, Any]:
    """Extension: grade each row's reference answer (or a column of outputs) to check a grader on real data."""
    from daemon.context import ctx_of
    from daemon.files import get_file

    row = get_file(ctx_of(request).store, body.file_id)
    return await run_in_threadpool(_test, body, row["path"])
