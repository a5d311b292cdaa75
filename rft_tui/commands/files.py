"""`rft-tui files add|list|show`."""

from __future__ import annotations

from pathlib import Path

import click

from rft_tui.cli import CliContext, pass_ctx
from rft_tui.output import fmt_time, handle_errors, json_option, print_json, print_kv, print_table


@click.group("files")
def group() -> None:
    """Import and inspect JSONL training and validation files."""


@group.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--purpose", default="fine-tune", show_default=True)
@json_option
@pass_ctx
@handle_errors
def add(obj: CliContext, paths: tuple[str, ...], purpose: str, as_json: bool) -> None:
    """Copy files into the store (by content hash: adding the same bytes again returns the same id)."""
    client = obj.client()
    results = [client.import_file(str(Path(p).resolve()), purpose=purpose) for p in paths]
    if as_json:
        print_json(results if len(results) > 1 else results[0])
        return
    print_table(["id", "filename", "rows", "bytes"], [(f.id, f.filename, f.rows, f.bytes) for f in results])


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
@json_option
@pass_ctx
@handle_errors
def show(obj: CliContext, file_id: str, as_json: bool) -> None:
    """Show one file's details."""
    f = obj.client().get_file(file_id)
    if as_json:
        print_json(f)
        return
    print_kv([("id", f.id), ("filename", f.filename), ("purpose", f.purpose), ("rows", f.rows),
              ("bytes", f.bytes), ("sha256", f.sha256), ("created", fmt_time(f.created_at)),
              ("source", f.source_path)])
