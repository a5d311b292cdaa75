"""`rft-tui graders validate|run|test`: check a grader and try it on samples through the daemon."""

from __future__ import annotations

import json
from typing import Any

import click

from rft_tui.cli import CliContext, pass_ctx
from rft_tui.grader_files import load_grader_dict
from rft_tui.output import handle_errors, json_option, print_json, print_kv


@click.group("graders")
def group() -> None:
    """Validate graders and run them on samples."""


@group.command()
@click.argument("grader_file", type=click.Path(exists=True, dir_okay=False))
@json_option
@pass_ctx
@handle_errors
def validate(obj: CliContext, grader_file: str, as_json: bool) -> None:
    """Check a grader file: spec, formula, python source, templates."""
    res = obj.client().validate_grader(load_grader_dict(grader_file))
    if as_json:
        print_json(res)
        return
    click.echo(f"{grader_file}: valid ({res.grader.get('type') if res.grader else '?'} grader)")
    if res.item_fields:
        click.echo(f"uses item fields: {', '.join(res.item_fields)}")


@group.command()
@click.argument("grader_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--sample", required=True, help="The model's output text.")
@click.option("--item", "item_json", default="{}", help="The dataset row as JSON.")
@json_option
@pass_ctx
@handle_errors
def run(obj: CliContext, grader_file: str, sample: str, item_json: str, as_json: bool) -> None:
    """Grade one sample against one item."""
    try:
        item: dict[str, Any] = json.loads(item_json)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="--item") from e
    res = obj.client().run_grader(load_grader_dict(grader_file), sample, item)
    if as_json:
        print_json(res)
        return
    errors = [k for k, v in res.metadata.errors.model_dump().items() if v is True]
    print_kv([("reward", f"{res.reward:.4f}"), ("sub rewards", json.dumps(res.sub_rewards) if res.sub_rewards else "-"),
              ("errors", ", ".join(errors) or "none"), ("time", f"{res.metadata.execution_time * 1000:.1f} ms")])
