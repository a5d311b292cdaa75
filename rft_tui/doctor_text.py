"""Doctor's report as lines (CLI) or styled text (the TUI's Doctor view from the command palette)."""

from __future__ import annotations

from rich.text import Text

from daemon import api

MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}
GiB = 2**30


def doctor_lines(report: api.DoctorReport) -> list[tuple[str, str]]:
    """(status, line) per check, each not-ok check followed by its fix; then the cached models."""
    lines: list[tuple[str, str]] = []
    for c in report.checks:
        lines.append((c.status, f"{MARK[c.status]} {c.name}: {c.detail}"))
        if c.fix and c.status != "ok":
            lines.append((c.status, f"       fix: {c.fix}"))
    for m in report.models:
        lines.append(("ok", f"       model {m.id}: {(m.size_bytes or 0) / GiB:.2f} GiB"))
    return lines


def doctor_text(report: api.DoctorReport) -> Text:
    out = Text()
    for status, line in doctor_lines(report):
        out.append(line + "\n", style=STYLE[status] if not line.startswith("       model") else "dim")
    out.append("\nall good" if report.ok else "\nsome checks failed: see the fixes above",
               style="green" if report.ok else "bold red")
    return out
