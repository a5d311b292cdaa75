"""The real training worker with an out-of-memory error injected at one phase: an honest fake of a CUDA OOM.

The job's metadata `oom_phase` (generation | forward | backward | validation) and `oom_step` choose where: the real
`torch.OutOfMemoryError` (torch's own exception type, what CUDA's allocator raises) is raised from a hook on
the real GRPOTrainer / Accelerator / Validator method that phase runs, once the trainer reaches that step.
`oom_times` (default: every time) limits how often, so a retry with a smaller batch can succeed. Under torchrun,
`oom_rank` makes only that rank run out (the others then wait in a collective for it, as with a real OOM), and
`oom_min_micro_batch` only while the per-device batch is at least that big -- what a real OOM does, so a job
relaunched with half the micro-batch gets through.
Everything else -- model, TRL, LoRA, graders, store, daemon -- is the real thing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from daemon.worker.__main__ import main

PHASE, STEP, TIMES = "forward", 1, 1_000_000
RANK: int | None = None  # only this rank runs out (None: every rank)
MIN_MICRO_BATCH = 0  # only while the per-device batch is at least this
_raised = {"n": 0}


def configure(job_id: str) -> None:
    """Read where to fail from the job's metadata (one daemon runs jobs failing at different phases)."""
    import json

    from daemon.paths import Paths
    from daemon.store import Store

    global PHASE, STEP, TIMES, RANK, MIN_MICRO_BATCH
    store = Store(Paths.resolve(os.environ["RFT_HOME"]).db)  # read only: the job's metadata
    row = store.get_job_row(job_id) or {}
    store.close()
    meta = json.loads(row.get("metadata") or "{}") or {}
    PHASE = meta.get("oom_phase", PHASE)
    STEP = int(meta.get("oom_step", STEP))
    TIMES = int(meta.get("oom_times", TIMES))
    RANK = int(meta["oom_rank"]) if "oom_rank" in meta else None
    MIN_MICRO_BATCH = int(meta.get("oom_min_micro_batch", MIN_MICRO_BATCH))


def _oom(step: int, micro_batch: int) -> None:
    import torch

    if RANK is not None and int(os.environ.get("RANK", "0")) != RANK or micro_batch < MIN_MICRO_BATCH:
        return
    if step >= STEP and _raised["n"] < TIMES:
        _raised["n"] += 1
        raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test at {PHASE}"
                                     f" step {step}, rank {os.environ.get('RANK', '0')}, micro-batch {micro_batch})")


def install() -> None:
    """Wrap the class-level method of the chosen phase (the worker's own instrumentation wraps the instance)."""
    from accelerate import Accelerator
    from trl import GRPOTrainer

    from daemon.worker.validation import Validator

    trainers: list[Any] = []
    original_init = GRPOTrainer.__init__

    def init(self: Any, *a: Any, **kw: Any) -> None:
        original_init(self, *a, **kw)
        trainers.append(self)

    GRPOTrainer.__init__ = init  # type: ignore[method-assign]

    def current_step() -> int:
        return int(trainers[-1].state.global_step) + 1 if trainers else 1

    def micro_batch() -> int:
        return int(trainers[-1].args.per_device_train_batch_size) if trainers else 0

    def hook(cls: Any, name: str, step_of: Any) -> None:
        inner = getattr(cls, name)

        def raising(self: Any, *a: Any, **kw: Any) -> Any:
            _oom(step_of(self, *a), micro_batch())
            return inner(self, *a, **kw)

        setattr(cls, name, raising)

    if PHASE == "generation":
        hook(GRPOTrainer, "_generate_and_score_completions", lambda self, *a: current_step())
    elif PHASE == "forward":
        hook(GRPOTrainer, "compute_loss", lambda self, *a: current_step())
    elif PHASE == "backward":
        hook(Accelerator, "backward", lambda self, *a: current_step())
    elif PHASE == "validation":
        hook(Validator, "run", lambda self, *a: current_step() - 1)  # validation runs after step N's update
    else:
        raise SystemExit(f"RFT_OOM_PHASE must be generation, forward, backward or validation, not {PHASE!r}")


if __name__ == "__main__":
    configure(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("RFT_JOB_ID", ""))
    install()
    sys.exit(main(sys.argv))
