"""How numbers, times and job states look in the TUI (one place, so every screen agrees)."""

from __future__ import annotations

from rich.text import Text

from daemon import api
from daemon.text import clip as clip

STATUS_STYLE: dict[api.JobStatus, str] = {
    api.JobStatus.validating_files: "cyan",
    api.JobStatus.queued: "bright_blue",
    api.JobStatus.running: "bold green",
    api.JobStatus.paused: "yellow",
    api.JobStatus.succeeded: "green",
    api.JobStatus.failed: "bold red",
    api.JobStatus.cancelled: "bright_black",
}
BAR_FULL, BAR_EMPTY = "█", "░"


def status_text(status: api.JobStatus) -> Text:
    return Text(status.value.replace("_", " "), style=STATUS_STYLE.get(status, ""))


def status_with_alarms(job: api.FineTuningJob) -> Text:
    """The status, with a badge when alarms are open: `running ⚠2` (red: one is critical; yellow: warnings)."""
    text = status_text(job.status)
    p = job.progress
    if p.alarms_open:
        text.append(f" ⚠{p.alarms_open}", style="bold red" if p.alarm_severity == "critical" else "bold yellow")
    return text


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def reward(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def bar(step: int, total: int | None, width: int = 10) -> str:
    if not total:
        return BAR_EMPTY * width
    filled = round(width * min(1.0, step / total))
    return BAR_FULL * filled + BAR_EMPTY * (width - filled)


def progress(job: api.FineTuningJob, width: int = 8) -> Text:
    p = job.progress
    text = Text(f"{p.step}/{p.total_steps or '?'} ")
    style = "green" if job.status is api.JobStatus.succeeded else ("red" if job.status is api.JobStatus.failed
                                                                    else "blue")
    text.append(bar(p.step, p.total_steps, width), style=style)
    return text


def valid_change(base: float | None, latest: float | None) -> Text:
    """`0.350 → 0.610` coloured by direction."""
    if base is None and latest is None:
        return Text("-")
    if latest is None or base is None or latest == base:
        return Text(reward(base if latest is None else latest))
    style = "green" if latest > base else "red"
    return Text.assemble(reward(base), " → ", (reward(latest), style))


def elapsed_and_eta(job: api.FineTuningJob, now: float) -> tuple[float | None, float | None]:
    """Elapsed run time and ETA; a running job's tick from `now` (the app's clock) and its start."""
    p = job.progress
    elapsed = p.elapsed_s
    if job.status is api.JobStatus.running and p.started_at:
        elapsed = max(0.0, now - p.started_at)
    eta = None
    if job.status is api.JobStatus.running and p.total_steps and p.step and elapsed:
        eta = elapsed / p.step * max(0, p.total_steps - p.step)
    return elapsed, eta


def short_id(job_id: str) -> str:
    """`ftjob-` plus 8 hex digits: unique enough to read, short enough for 80 columns."""
    prefix, _, rest = job_id.partition("-")
    return f"{prefix}-{rest[:8]}" if rest else job_id


def file_label(job: api.FineTuningJob, names: dict[str, str] | None = None) -> str:
    """`train.jsonl / valid.jsonl` from the job's snapshot or the known file names, else the file ids."""
    snap = job.snapshot
    names = names or {}
    train = (snap and snap.training_file.filename) or names.get(job.training_file) or job.training_file
    valid = None
    if job.validation_file:
        valid = ((snap and snap.validation_file and snap.validation_file.filename)
                 or names.get(job.validation_file) or job.validation_file)
    return f"{train} / {valid}" if valid else str(train)


def clock_time(ts: float | None) -> str:
    import time

    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z"
