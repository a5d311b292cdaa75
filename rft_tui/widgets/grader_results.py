"""Text for the Graders screen: the playground's run over a file, and a pre-flight report."""

from __future__ import annotations

from rich.text import Text

from daemon import api
from daemon.text import clip

BAR_WIDTH = 20


def file_report_text(report: api.GraderTestReport) -> Text:
    """A file's grading at a glance: how many rows, the score distribution, errors and the lowest rows."""
    out = Text()
    out.append(f"{report.graded} of {report.rows} rows", style="bold")
    out.append(f", column '{report.field}'  ({report.elapsed_s:.2f}s)\n", style="dim")
    if report.missing_field:
        out.append(f"{report.missing_field} rows lack '{report.field}'\n", style="yellow")
    if report.reward_mean is not None:
        out.append(f"mean {report.reward_mean:.3f}  std {report.reward_std or 0:.3f}\n"
                   f"min  {report.reward_min:.3f}  max {report.reward_max:.3f}\n")
    if report.pass_rate is not None:
        out.append("reward 1.0 ", style="bold")
        out.append(f"{report.pass_rate:.0%} of rows\n", style="green" if report.pass_rate >= 0.9 else "yellow")
    peak = max((c for _b, c in report.histogram), default=0) or 1
    for bucket, count in report.histogram:
        out.append(f"  {bucket:3.1f}–{min(1.0, bucket + 0.1):3.1f} {'█' * round(BAR_WIDTH * count / peak):<{BAR_WIDTH}}"
                   f" {count}\n")
    out.append("errors ", style="bold")
    if report.errors:
        out.append(", ".join(f"{k} ×{v}" for k, v in sorted(report.errors.items()))
                   + f" ({report.rows_with_errors} rows)\n", style="red")
    else:
        out.append("none\n", style="green")
    if report.sub_reward_means:
        out.append("sub-rewards ", style="bold")
        out.append(", ".join(f"{k} {v:.3f}" for k, v in report.sub_reward_means.items()) + "\n")
    if report.lowest and report.reward_min is not None and report.reward_min < 1.0:
        out.append("lowest rows\n", style="bold")
        for ex in report.lowest:
            sample = clip(ex.sample, 30)
            out.append(f"  line {ex.line}: {ex.reward:.3f} {sample!r}")
            out.append(f" [{', '.join(ex.errors)}]\n" if ex.errors else "\n", style="red")
    return out


def preflight_text(report: api.PreflightReport) -> Text:
    out = Text()
    out.append(f"{report.model}: {report.rows} rows x {report.completions_per_row} completions"
               f" in {report.elapsed_s:.1f}s\n", style="bold")
    out.append(f"reward mean {report.reward_mean:.3f}  std {report.reward_std:.3f}\n")
    zero = report.zero_signal_fraction or 0.0
    zero_style = "red" if zero > 0.5 else ("yellow" if zero > 0.2 else "green")
    out.append("zero-signal rows ", style="bold")
    out.append(f"{report.zero_signal_rows}/{report.rows} ({report.zero_signal_fraction:.0%})\n", style=zero_style)
    peak = max((c for _b, c in report.reward_histogram), default=0) or 1
    for bucket, count in report.reward_histogram:
        bar = "█" * round(BAR_WIDTH * count / peak)
        out.append(f"  {bucket:4.2f} {bar} {count}\n")
    out.append("grader errors ", style="bold")
    if report.grader_errors:
        out.append(", ".join(f"{k} {v}" for k, v in report.grader_errors.items())
                   + f" ({report.grader_error_rate:.0%})\n", style="red")
    else:
        out.append("none\n", style="green")
    out.append(f"longest prompt {report.longest_prompt_tokens} tok, "
               f"completion {report.longest_completion_tokens} tok\n", style="dim")
    out.append_text(fooling_text(report))
    if report.verdict:
        out.append("verdict ", style="bold")
        out.append(report.verdict + "\n")
    return out


def fooling_text(report: api.PreflightReport) -> Text:
    """The signal map (a cell per row: █ signal, · none) and each probe's mean reward against the base's."""
    out = Text()
    if report.signal_map:
        out.append("signal map ", style="bold")
        for r in report.signal_map:
            out.append("█" if r.signal else "·", style="green" if r.signal else "red")
        if report.no_signal_rows:
            shown = ", ".join(str(i) for i in report.no_signal_rows[:12])
            more = " …" if len(report.no_signal_rows) > 12 else ""
            out.append(f"  no signal: rows {shown}{more}", style="dim")
        out.append("\n")
    if report.probes:
        out.append(f"probes (should score 0; base mean {report.reward_mean:.3f})\n", style="bold")
        for p in report.probes:
            out.append(f"  {p.name:<12} {p.reward_mean:.3f}", style="red bold" if p.reaches_base else "")
            out.append("  ≥ base\n" if p.reaches_base else "\n", style="red bold")
    if report.gameability_warning:
        out.append(report.gameability_warning + "\n", style="red")
    return out
