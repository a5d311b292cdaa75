"""`rft-tui files add|list|show|validate|rows`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from daemon import api
from daemon.client import Client
from rft_tui.commands import ids
from rft_tui.context import CliContext, pass_ctx
from rft_tui.output import fmt_time, handle_errors, json_option, load_grader, print_json, print_kv, print_table

PROGRESS_MIN_BYTES = 8 << 20


@click.group("files")
def group() -> None:
    """Import, validate and browse JSONL training and validation files."""


def _upload(client: Any, path: str, purpose: str, force: bool) -> api.FileObject:
    """Upload through the daemon API unless it has these bytes already; a progress bar on a terminal for big files."""
    size = Path(path).stat().st_size
    if size < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        return client.add_file(path, purpose=purpose, force=force)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task(f"uploading {Path(path).name}", total=size)

        def advance(n: int) -> None:
            progress.advance(task, n)
            if progress.tasks[0].completed >= size:
                progress.update(task, description=f"validating {Path(path).name}")

        return client.add_file(path, purpose=purpose, force=force, on_progress=advance)


@group.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--purpose", default="fine-tune", show_default=True)
@click.option("--force", is_flag=True, help="Keep a file even if it has errors (to inspect it; jobs refuse it).")
@json_option
@pass_ctx
@handle_errors
def add(obj: CliContext, paths: tuple[str, ...], purpose: str, force: bool, as_json: bool) -> None:
    """Validate and copy files into the store (same bytes again -> same id). A file with errors is refused."""
    client = obj.client()
    results = [_upload(client, p, purpose, force) for p in paths]
    if as_json:
        print_json(results if len(results) > 1 else results[0])
        return
    print_table(["id", "filename", "rows", "bytes"], [(f.id, f.filename, f.rows, f.bytes) for f in results])
    for f in results:
        if f.status_details:
            click.echo(f"{f.id}: {f.status_details}", err=True)


@group.command("list")
@click.option("--limit", default=100, show_default=True)
@json_option
@pass_ctx
@handle_errors
def list_(obj: CliContext, limit: int, as_json: bool) -> None:
    """List imported files, newest first."""
    page = obj.client().list_files(limit=limit)
    if as_json:
        print_json(page)
        return
    print_table(["id", "filename", "rows", "bytes", "created"],
                [(f.id, f.filename, f.rows, f.bytes, fmt_time(f.created_at)) for f in page.data])


@group.command("show")
@click.argument("file_id")
@click.option("--tokenizer", "tokenizer_model", default=None, metavar="MODEL",
              help="Also count prompt tokens with this model's tokenizer (e.g. builtin:tiny-arith).")
@json_option
@pass_ctx
@handle_errors
def show(obj: CliContext, file_id: str, tokenizer_model: str | None, as_json: bool) -> None:
    """Show one file's details and stats: fields and their types, prompt lengths, short-answer values."""
    client = obj.client(timeout=600.0)
    file_id = ids.file_id(client, file_id)
    f = client.get_file(file_id)
    report = client.validate_file(api.FileValidateRequest(file_id=file_id, tokenizer_model=tokenizer_model))
    if as_json:
        print_json({**f.model_dump(mode="json"), "stats": report.stats, "errors": report.errors,
                    "warnings": report.warnings})
        return
    print_kv([("id", f.id), ("filename", f.filename), ("purpose", f.purpose), ("rows", f.rows),
              ("bytes", f.bytes), ("sha256", f.sha256), ("created", fmt_time(f.created_at)),
              ("source", f.source_path), ("status", f.status_details or f.status),
              ("problems", f"{report.errors} errors, {report.warnings} warnings")])
    _print_stats(report.stats)


def _fmt_dist(d: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:g}" for k, v in d.items())


def _print_stats(stats: api.FileStats) -> None:
    click.echo("")
    if stats.prompt_chars:
        click.echo(f"prompt chars   {_fmt_dist(stats.prompt_chars)}")
    if stats.prompt_tokens:
        click.echo(f"prompt tokens  {_fmt_dist(stats.prompt_tokens)}")
    if stats.message_counts:
        click.echo("messages       " + "  ".join(f"{k} {v}" for k, v in stats.message_counts.items()))
    click.echo("")
    print_table(["field", "types", "present", "top values"], [
        (fs.name, ", ".join(f"{t} {n}" for t, n in fs.types.items()), fs.present,
         ", ".join(f"{v!r} {n}" for v, n in (fs.top_values or [])[:5]))
        for fs in stats.fields])


def _ref(obj: CliContext, client: Client, value: str, param: str) -> dict[str, str]:
    """A stored file id (or unique prefix); a local path the local daemon reads in place; for a daemon on another
    machine (--ssh, --url) the file's bytes are uploaded first (kept even with errors, so they can be reported)."""
    p = Path(value).expanduser()
    if ids.looks_like_file_id(value) and not p.exists():
        return {"file_id": ids.file_id(client, value, param=param)}
    if not p.is_file():
        raise click.BadParameter(ids.not_a_file(value), param_hint=param)
    if obj.remote:
        return {"file_id": client.add_file(str(p.resolve()), force=True).id}
    return {"path": str(p.resolve())}


def _problem_line(p: api.Problem) -> str:
    where = f"{p.file}:{p.line}" if p.line is not None else p.file
    field = f" {p.field}:" if p.field else ""
    return f"{where}: {p.severity}:{field} {p.message} [{p.code}]"


OVERLAP_CODES = frozenset({"overlap", "near_duplicate"})


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'s' if count != 1 else ''}"


def _print_report(report: api.ValidationReport, overlap: api.OverlapReport | None = None) -> int:
    """One file's own problems and summary line; overlap problems are left to `_print_overlap`. Its error count."""
    shared_errors = overlap.exact if overlap else 0
    shared_warnings = overlap.near if overlap else 0
    errors, warnings = report.errors - shared_errors, report.warnings - shared_warnings
    for p in report.problems:
        if not (overlap and p.code in OVERLAP_CODES):
            click.echo(_problem_line(p))
    if report.problems_truncated:
        click.echo(f"{report.file}: ... (list capped; {_n(errors, 'error')} and {_n(warnings, 'warning')} in all)")
    state = "ok" if errors == 0 else "FAILED"
    click.echo(f"{report.file}: {state}: {report.stats.rows} rows, {_n(errors, 'error')}, {_n(warnings, 'warning')}")
    return errors


def _print_overlap(o: api.OverlapReport, first: str, second: str) -> None:
    """Prompts found in both files, each side named by its own file and line (whichever way round they were given).

    The daemon reports `train_line` for FILE (the first argument) and `valid_line` for `--against`.
    """
    click.echo(f"overlap: {_n(o.exact, 'prompt')} in both {first} and {second} (exact), "
               f"{_n(o.near, 'near-duplicate')} (>= {o.threshold:.0%} similar)")
    for p in o.exact_pairs:
        click.echo(f"  exact: {first} line {p.train_line} = {second} line {p.valid_line}")
    for p in o.near_pairs:
        click.echo(f"  near:  {first} line {p.train_line} ~ {second} line {p.valid_line} ({p.similarity:.0%})")


def _print_verdict(counts: list[tuple[str, int]], overlap: api.OverlapReport | None, first: str, second: str) -> None:
    """The last line: what failed, counted, by file (overlap belongs to both files, so it names both)."""
    failed = [f"{_n(n, 'error')} in {name}" for name, n in counts if n]
    if overlap and overlap.exact:
        failed.append(f"{_n(overlap.exact, 'prompt')} in both {first} and {second} "
                      "(remove them from the validation file, or create the job with --allow-overlap)")
    click.echo(f"FAILED: {'; '.join(failed)}" if failed else "ok: no errors")


@group.command("validate")
@click.argument("file")
@click.option("--against", default=None, metavar="VALID",
              help="Validation file (path or id): also checked, plus its overlap with FILE.")
@click.option("--grader", "grader_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Grader file: every {{item.x}} it uses must exist in every row.")
@click.option("--tokenizer", "tokenizer_model", default=None, metavar="MODEL",
              help="Count prompt tokens with this model's tokenizer.")
@click.option("--max-problems", default=200, show_default=True, help="List at most this many problems per file.")
@json_option
@pass_ctx
@handle_errors
def validate(obj: CliContext, file: str, against: str | None, grader_file: str | None,
             tokenizer_model: str | None, max_problems: int, as_json: bool) -> None:
    """Check a JSONL file (path or id): every problem with its line and field. Exit 1 if there are errors."""
    grader = load_grader(grader_file, "--grader") if grader_file else None
    client = obj.client(timeout=600.0)
    against_ref = None
    if against is not None:
        ref = _ref(obj, client, against, "--against")
        against_ref = ref.get("file_id") or ref["path"]
    req = api.FileValidateRequest(**_ref(obj, client, file, "FILE"), against=against_ref, grader=grader,
                                  tokenizer_model=tokenizer_model, max_problems=max_problems)
    report = client.validate_file(req)
    if as_json:
        print_json(report)
    elif report.against is None:
        _print_report(report)
    else:
        first, second = report.file, report.against.file
        counts = [(first, _print_report(report)), (second, _print_report(report.against, report.overlap))]
        if report.overlap is not None:
            _print_overlap(report.overlap, first, second)
        _print_verdict(counts, report.overlap, first, second)
    if not as_json and report.stats.prompt_tokens:
        click.echo(f"prompt tokens: {_fmt_dist(report.stats.prompt_tokens)}")
    if not report.ok:
        sys.exit(1)


@group.command("rows")
@click.argument("file_id")
@click.option("--offset", default=0, show_default=True, help="First row (0-based).")
@click.option("--limit", default=20, show_default=True, help="How many rows.")
@json_option
@pass_ctx
@handle_errors
def rows(obj: CliContext, file_id: str, offset: int, limit: int, as_json: bool) -> None:
    """Print a page of a stored file's rows (any page is as fast as the first)."""
    client = obj.client()
    page = client.file_rows(ids.file_id(client, file_id), offset=offset, limit=limit)
    if as_json:
        print_json(page)
        return
    for r in page.data:
        text = json.dumps(r.data, ensure_ascii=False) if r.data is not None else f"ERROR: {r.error}: {r.raw}"
        click.echo(f"{r.line:>8}  {text}")
    shown = f"{page.offset + 1}-{page.offset + len(page.data)}" if page.data else "none"
    click.echo(f"rows {shown} of {page.total_rows}", err=True)
