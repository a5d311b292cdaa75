"""`python -m daemon.worker JOB_ID`: run one job's training and record how it ended.

The daemon starts this in the job's directory with RFT_HOME and RFT_JOB_ID set (or under torchrun with N
ranks). Whatever happens, rank 0 calls `reporter.finish(...)` with succeeded / paused / cancelled / failed;
a failure's message names the exception (out of memory gets a hint) and the traceback goes to the log.
"""

from __future__ import annotations

import os
import sys
import traceback


def main(argv: list[str]) -> int:
    job_id = argv[1] if len(argv) > 1 else os.environ.get("RFT_JOB_ID", "")
    home = os.environ.get("RFT_HOME")
    if not job_id or not home:
        print("usage: RFT_HOME=... python -m daemon.worker JOB_ID", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from daemon.worker.grpo import TrainingRun, oom_message

    run: TrainingRun | None = None
    try:
        run = TrainingRun(job_id, home)
        outcome = run.execute()
        if run.reporter is not None:
            detail = {"paused": "checkpointed; resume continues from here", "cancelled": "stopped at a step boundary"}
            run.reporter.finish(outcome, detail.get(outcome),
                                fine_tuned_model=run.fine_tuned_model_name() if outcome == "succeeded" else None)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the store with its reason
        import torch

        traceback.print_exc()
        if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
            message = oom_message(exc)
        elif isinstance(exc, KeyboardInterrupt):
            message = "interrupted"
        else:
            message = f"{type(exc).__name__}: {str(exc)[:2000]}"
        reporter = run.reporter if run is not None else None
        if reporter is None and int(os.environ.get("RANK", "0")) == 0:
            from daemon.worker.reporting import JobReporter

            try:
                reporter = JobReporter(home, job_id)
            except Exception:  # noqa: BLE001 - the store itself is unusable: the log has the reason
                reporter = None
        if reporter is not None:
            reporter.event(f"Worker failed: {message}", level="error")
            reporter.finish("failed", message)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
