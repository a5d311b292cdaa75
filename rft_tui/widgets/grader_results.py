"""Text for the Graders screen: a playground run's reward and flags, and a pre-flight report."""

from __future__ import annotations

from rich.text import Text

from daemon import api

BAR_WIDTH = 24


def run_text(result: api.GraderRunResponse, sample: str) -> Text:
    out = Text()
    out.append("reward ", style="bold")
    out.append(f"{result.reward:.4f}", style="green" if result.reward >= 0.5 else "yellow")
    out.append(f"   ({result.metadata.execution_time * 1000:.1f} ms)\n", style="dim")
    out.append("sample ", style="bold")
    out.append(repr(sample if len(sample) <= 60 else sample[:57] + "...") + "\n")
    if result.sub_rewards:
        out.append("sub-rewards\n", style="bold")
        for name, value in result.sub_rewards.items():
            out.append(f"  {name}: {value:.4f}\n" if isinstance(value, (int, float)) else f"  {name}: {value}\n")
    errors = result.metadata.errors.model_dump()
    flags = [k for k, v in errors.items() if v is True]
    out.append("errors ", style="bold")
    if not flags:
        out.append("none\n", style="green")
    else:
        out.append(", ".join(flags) + "\n", style="red")
        for k, v in errors.items():
            if k.endswith(("_details", "_type")) and v:
                out.append(f"  {v}\n", style="red")
    return out


def preflight_text(report: api.PreflightReport) -> Text:
    out = Text()
    out.append(f"{report.model}: {report.rows} rows x {report.completions_per_row} completions"
               f" in {report.elapsed_s:.1f}s\n", style="bold")
    out.append(f"reward mean {report.reward_mean:.3f}  std {report.reward_std:.3f}\n")
    zero_style = "red" if report.zero_signal_fraction > 0.5 else ("yellow" if report.zero_signal_fraction > 0.2 else "green")
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
    out.append(f"longest prompt {report.longest_prompt_tokens} tok, completion {report.longest_completion_tokens} tok\n",
               style="dim")
    if report.verdict:
        out.append("verdict ", style="bold")
        out.append(report.verdict + "\n")
    return out
