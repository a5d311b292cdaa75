"""`rft-tui graders validate|run|test`: check a grader and try it on samples through the daemon."""

from __future__ import annotations

import json
from typing import Any

import click

from rft_tui.context import CliContext, pass_ctx
from rft_tui.output import handle_errors, json_option, load_grader, print_json, print_kv


@click.group("graders")
def group() -> None:
    """Validate graders and run them on samples."""


@group.command()
@click.argument("grader_file", metavar="GRADER", type=click.Path(exists=True, dir_okay=False))
@json_option
@pass_ctx
@handle_errors
def validate(obj: CliContext, grader_file: str, as_json: bool) -> None:
    """Check a grader file GRADER (JSON, YAML or .py): spec, formula, python source, templates."""
    res = obj.client().validate_grader(load_grader(grader_file, "GRADER"))
    if as_json:
        print_json(res)
        return
    click.echo(f"{grader_file}: valid ({res.grader.get('type') if res.grader else '?'} grader)")
    if res.item_fields:
        click.echo(f"uses item fields: {', '.join(res.item_fields)}")


@group.command()
@click.argument("grader_file", metavar="GRADER", type=click.Path(exists=True, dir_okay=False))
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
    res = obj.client().run_grader(load_grader(grader_file, "GRADER"), sample, item)
    if as_json:
        print_json(res)
        return
    errors = [k for k, v in res.metadata.errors.model_dump().items() if v is True]
    print_kv([("reward", f"{res.reward:.4f}"), ("sub rewards", json.dumps(res.sub_rewards) if res.sub_rewards else "-"),
              ("errors", ", ".join(errors) or "none"), ("time", f"{res.metadata.execution_time * 1000:.1f} ms")])


@group.command()
@click.argument("grader_file", metavar="GRADER", type=click.Path(exists=True, dir_okay=False))
@click.option("--file", "dataset", required=True, help="Dataset: a file id or a local JSONL path (imported).")
@click.option("--field", default=None,
              help="Column to grade as the model's output (default: answer, reference_answer, ...).")
@click.option("--limit", default=1000, show_default=True, help="Rows to grade.")
@json_option
@pass_ctx
@handle_errors
def test(obj: CliContext, grader_file: str, dataset: str, field: str | None, limit: int, as_json: bool) -> None:
    """Grade each row's reference answer (or a column of outputs): score distribution and error counts.

    Grading the reference answers should score ~1.0; anything else means the grader or the data is off.
    """
    from rft_tui.commands.jobs import resolve_file

    client = obj.client()
    file_id = resolve_file(client, dataset, "--file")
    assert file_id is not None
    rep = client.test_grader(load_grader(grader_file, "GRADER"), file_id, field=field, limit=limit)
    if as_json:
        print_json(rep)
        return
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    print_kv([("file", f"{rep.file_id} (column '{rep.field}')"), ("rows graded", f"{rep.graded} of {rep.rows}"),
              ("missing the column", rep.missing_field),
              ("reward mean / std", f"{fmt(rep.reward_mean)} / {fmt(rep.reward_std)}"),
              ("reward min / max", f"{fmt(rep.reward_min)} / {fmt(rep.reward_max)}"),
              ("pass rate (reward 1.0)", fmt(rep.pass_rate)),
              ("rows with grader errors", rep.rows_with_errors),
              ("time", f"{rep.elapsed_s:.2f} s")])
    if rep.sub_reward_means:
        click.echo("sub-reward means: " + ", ".join(f"{k} {v:.3f}" for k, v in rep.sub_reward_means.items()))
    if rep.errors:
        click.echo("errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(rep.errors.items())))
    peak = max((c for _, c in rep.histogram), default=0) or 1
    click.echo("distribution:")
    for lo, count in rep.histogram:
        click.echo(f"  {lo:.1f}-{lo + 0.1:.1f}  {'#' * round(30 * count / peak):<30} {count}")
    if rep.lowest and rep.reward_min is not None and rep.reward_min < 1.0:
        click.echo("lowest-scoring rows:")
        for ex in rep.lowest:
            flags = f"  [{', '.join(ex.errors)}]" if ex.errors else ""
            click.echo(f"  line {ex.line}: {ex.reward:.3f}  {ex.sample!r}{flags}")
