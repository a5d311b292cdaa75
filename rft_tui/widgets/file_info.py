"""Text for the Files screen's info panel: a file's stats and a validation report's summary."""

from __future__ import annotations

from rich.text import Text

from daemon import api
from rft_tui.widgets.file_picker import file_label


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def file_text(f: api.FileObject | None) -> Text:
    if f is None:
        return Text("No file selected. Import one with: rft-tui files add PATH", style="dim")
    out = Text()
    out.append(f.filename, style="bold")
    out.append(f"  {f.id}\n")
    out.append(f"{f.rows if f.rows is not None else '?'} rows, {human_bytes(f.bytes)}, purpose {f.purpose}")
    if f.status != "processed":
        out.append(f", status {f.status}" + (f": {f.status_details}" if f.status_details else ""), style="yellow")
    return out


def stats_text(stats: api.FileStats) -> Text:
    out = Text()
    if stats.fields:
        parts = []
        for fs in stats.fields[:8]:
            kinds = "/".join(sorted(fs.types))
            parts.append(f"{fs.name}:{kinds} {fs.present}/{stats.rows}")
        out.append("fields  ", style="bold")
        out.append(", ".join(parts) + ("" if len(stats.fields) <= 8 else f" (+{len(stats.fields) - 8})") + "\n")
    if stats.prompt_chars:
        pc = stats.prompt_chars
        out.append("prompt chars  ", style="bold")
        out.append("  ".join(f"{k} {v:.0f}" for k, v in pc.items()) + "\n")
    if stats.prompt_tokens:
        out.append("prompt tokens  ", style="bold")
        out.append("  ".join(f"{k} {v:.0f}" for k, v in stats.prompt_tokens.items()) + "\n")
    if stats.message_counts:
        out.append("messages  ", style="bold")
        out.append("  ".join(f"{k} {v}" for k, v in stats.message_counts.items()) + "\n")
    return out


def report_text(report: api.ValidationReport, against: api.FileObject | None) -> Text:
    out = Text()
    verdict = ("ok", "green") if report.ok else ("problems found", "red")
    out.append("validation: ", style="bold")
    out.append(verdict[0], style=verdict[1])
    out.append(f"  {report.errors} errors, {report.warnings} warnings"
               + (" (list truncated)" if report.problems_truncated else "") + "\n")
    if report.against is not None:
        label = file_label(against) if against else report.against.file
        out.append(f"against {label}: ", style="bold")
        out.append(f"{report.against.errors} errors, {report.against.warnings} warnings\n")
    if report.overlap is not None:
        ov = report.overlap
        style = "red" if ov.exact else ("yellow" if ov.near else "green")
        out.append("train/valid overlap: ", style="bold")
        out.append(f"{ov.exact} exact, {ov.near} near (>= {ov.threshold:.2f})\n", style=style)
    out.append_text(stats_text(report.stats))
    return out
