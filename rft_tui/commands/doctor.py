"""`rft-tui doctor` and `rft-tui models`: is the daemon's machine ready to train, and what can it train.

Both ask the daemon (it is where the workers run, also when the TUI is on another machine); the daemon asks
the worker's own interpreter about torch, CUDA and vLLM, so nothing heavy is imported here.
"""

from __future__ import annotations

import click

from rft_tui.context import CliContext, pass_ctx
from rft_tui.doctor_text import doctor_lines
from rft_tui.output import handle_errors, json_option, print_json, print_table

GiB = 2**30


@click.command("doctor")
@json_option
@pass_ctx
@handle_errors
def doctor(obj: CliContext, as_json: bool) -> None:
    """Check Python, torch, CUDA, GPUs, vLLM, the sandbox, disk and the HF cache (exit 1 if a line fails)."""
    report = obj.client().doctor()
    if as_json:
        print_json(report)
    else:
        for _status, line in doctor_lines(report):
            click.echo(line)
        click.echo("all good" if report.ok else "some checks failed: see the fixes above")
    if not report.ok:
        raise SystemExit(1)


def size(n: int | None) -> str:
    return "-" if n is None else f"{n / GiB:.2f} GiB"


@click.command("models")
@json_option
@pass_ctx
@handle_errors
def models(obj: CliContext, as_json: bool) -> None:
    """Models you can train here without a download (built-in and the HF cache), with size and fit verdict."""
    page = obj.client().list_models()
    if as_json:
        print_json(page)
        return
    print_table(["model", "source", "size", "parameters", "fits", "verdict"],
                [(m.id, m.source, size(m.size_bytes), f"{m.parameters:,}" if m.parameters else "-",
                  {True: "yes", False: "no", None: "?"}[m.fits], m.verdict) for m in page.data])
