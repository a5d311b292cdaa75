"""`python -m daemon.worker JOB_ID`: run one job's training and record how it ended.

The daemon starts this in the job's directory with RFT_HOME and RFT_JOB_ID set (or under torchrun with N
ranks). The pause/cancel handlers go in first, before anything heavy is imported: a pause while the worker
starts up ends the job `paused` at once (nothing to checkpoint yet), a pause later stops at the next step
boundary with a checkpoint. Whatever happens, rank 0 calls `reporter.finish(...)` with succeeded / paused /
cancelled / failed; a failure's message names the exception (out of memory gets a hint) and the traceback
goes to the log.
"""

from __future__ import annotations

import os
import sys
import traceback

from daemon.versions import LIBRARIES
from daemon.worker_protocol import ControlFlags, StopBeforeTraining

STOP_DETAIL = {"paused": "checkpointed; resume continues from here", "cancelled": "stopped at a step boundary"}
LIBRARY_WARNINGS = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "huggingface_hub")


def quiet_library_warnings() -> None:
    """Library FutureWarnings/UserWarnings/DeprecationWarnings say nothing a user can act on; keep the log readable."""
    import warnings

    for category in (FutureWarning, UserWarning, DeprecationWarning):
        for lib in LIBRARY_WARNINGS:
            warnings.filterwarnings("ignore", category=category, module=rf"{lib}(\..*)?$")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # "Loading weights: 0%|..." bars in the log


def main(argv: list[str]) -> int:
    os.umask(0o077)  # checkpoints, logs and anything else we write are owner-only, like the rest of the store
    flags = ControlFlags()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    job_id = argv[1] if len(argv) > 1 else os.environ.get("RFT_JOB_ID", "")
    home = os.environ.get("RFT_HOME")
    run = None
    try:
        # first thing: a pause now must not kill us. Ranks of a multi-process job stop together at a step
        # boundary instead (one rank alone must not leave the others waiting in a collective).
        flags.install(stop_while_starting=world == 1)
        from daemon.worker.reporting import reports_over_http

        if not job_id or not (home or reports_over_http()):
            print("usage: RFT_HOME=... python -m daemon.worker JOB_ID  (or RFT_REPORT_URL and RFT_REPORT_TOKEN "
                  "instead of RFT_HOME: report over the daemon's API)", file=sys.stderr)
            return 2
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        quiet_library_warnings()
        from daemon.worker.grpo import TrainingRun

        run = TrainingRun(job_id, home, flags)
        outcome = run.execute()
        if run.reporter is not None:
            run.reporter.finish(outcome, run.stop_detail or STOP_DETAIL.get(outcome),
                                fine_tuned_model=run.fine_tuned_model_name() if outcome == "succeeded" else None)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the store with its reason
        flags.training_started()  # no second interruption while we record the outcome
        if isinstance(exc, StopBeforeTraining) or flags.interrupted:
            # our own stop, raised into whatever start-up was doing (possibly re-raised as another exception)
            outcome = exc.outcome if isinstance(exc, StopBeforeTraining) else str(flags.interrupted)
            print(f"[worker] {outcome} before training started ({type(exc).__name__})", flush=True)
            _finish(home, job_id, run, outcome, f"{outcome} before training started")
            return 0
        traceback.print_exc()
        report = getattr(exc, "report", None)  # OutOfMemoryFailure: step, phase, peak, estimate, suggestion
        oom = isinstance(report, dict)
        _finish(home, job_id, run, "failed", _failure_message(exc), event=True,
                data={"out_of_memory": report, "rank": int(os.environ.get("RANK", "0"))} if oom else None,
                any_rank=oom)
        return 1


def _failure_message(exc: BaseException) -> str:
    if type(exc).__name__ == "OutOfMemoryFailure":  # already explained by the worker
        return str(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError
        from daemon.worker.grpo import oom_message

        return oom_message(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in LIBRARIES:
        import socket

        return (f"the worker's Python ({sys.executable} on {socket.gethostname()}) has no {exc.name}: install the "
                f"versions the job's snapshot records ({', '.join(LIBRARIES)}) or point the cluster's --python at a "
                f"Python that has them")
    if _disk_full(exc):
        from daemon.errors import disk_full_message

        return "disk full: " + disk_full_message(os.environ.get("RFT_HOME", "."))
    return f"{type(exc).__name__}: {str(exc)[:2000]}"


def _disk_full(exc: BaseException | None) -> bool:
    """ENOSPC/EDQUOT/SQLITE_FULL anywhere in the chain (torch re-raises a failed checkpoint write as RuntimeError)."""
    from daemon.store import is_disk_full_error

    seen = 0
    while exc is not None and seen < 10:
        if is_disk_full_error(exc) or "No space left on device" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _finish(home: str | None, job_id: str, run: object, outcome: str, message: str, event: bool = False,
            data: dict[str, object] | None = None, any_rank: bool = False) -> None:
    """Record the outcome through the run's reporter, or a fresh one if the run never got one: rank 0's, or with
    `any_rank` any rank's -- an out-of-memory error is the cause of a multi-process job's end, whichever rank hit
    it (the others then fail in a broken collective; the store keeps the out-of-memory failure over theirs)."""
    from daemon.worker.reporting import open_reporter, reports_over_http

    reporter = getattr(run, "reporter", None)
    any_rank = any_rank and not reports_over_http()  # over HTTP only rank 0 holds the journal that reports
    if reporter is None and job_id and (any_rank or int(os.environ.get("RANK", "0")) == 0):
        try:
            reporter = open_reporter(job_id, rank=int(os.environ.get("RANK", "0")), home=home)
        except Exception:  # noqa: BLE001 - the store itself is unusable: the log has the reason
            reporter = None
    if reporter is not None:
        if event:
            reporter.event(f"Worker failed: {message}", level="error", data=data)
        reporter.finish(outcome, message)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
