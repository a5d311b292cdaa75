"""CLI output: a readable table for people, `--json` for scripts; errors as one clear line."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from functools import wraps
from typing import Any

import click
from pydantic import BaseModel

from daemon.client import ApiRequestError, DaemonError, DaemonNotRunning


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    """A table sized to the terminal; the first column (ids) never wraps. Without a terminal: `print_lines`."""
    if not stdout_is_terminal():
        if title:
            click.echo(title)
        print_lines(headers, rows)
        return
    from rich.console import Console
    from rich.table import Table

    cells = [["" if v is None else str(v) for v in row] for row in rows]
    console = Console(soft_wrap=False)
    shown = _columns_that_fit(headers, cells, console.width)
    if len(shown) < len(headers):
        hidden = ", ".join(h for h in headers[len(shown):])
        click.echo(f"({hidden}: hidden at {console.width} columns; a wider terminal or --json shows them)", err=True)
    table = Table(title=title, show_edge=False, header_style="bold", pad_edge=False, box=None)
    for i, h in enumerate(shown):  # one line per row; a value wider than the terminal ends in an ellipsis
        table.add_column(h, no_wrap=True, overflow="ellipsis" if i else "fold")
    for row in cells:
        table.add_row(*row[:len(shown)])
    console.print(table)


def _columns_that_fit(headers: Sequence[str], cells: list[list[str]], width: int) -> Sequence[str]:
    """The leading columns whose full width fits the terminal (at least two): ids and values are never cut up."""
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    n = len(headers)
    while n > 2 and sum(widths[:n]) + 2 * (n - 1) > width:
        n -= 1
    return headers[:n]


def print_lines(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """One line per row, columns aligned, never wrapped or cut (pipes, logs, `grep`, `awk '{print $1}'`)."""
    cells = [[str(h) for h in headers]] + [["-" if v is None or v == "" else " ".join(str(v).split()) for v in row]
                                           for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def print_kv(pairs: Iterable[tuple[str, Any]]) -> None:
    pairs = list(pairs)
    width = max((len(k) for k, _ in pairs), default=0)
    for k, v in pairs:
        click.echo(f"{k.ljust(width)}  {'' if v is None else v}")


def fmt_time(ts: float | int | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def fmt_float(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _set_home(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value and ctx.obj is not None:
        import os

        from daemon.paths import Paths

        ctx.obj.home = str(Paths.resolve(value).home)
        os.environ["RFT_HOME"] = ctx.obj.home


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Adds `--json` (machine-readable output) and `--home` (state directory) to a command."""
    fn = click.option("--home", type=click.Path(file_okay=False), expose_value=False, callback=_set_home,
                      is_eager=True, help="State directory (overrides RFT_HOME).")(fn)
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


def load_grader(path: str, param_hint: str) -> dict[str, Any]:
    """The grader spec in `path`; parse errors name the argument the user typed (`GRADER`, `-g/--grader`)."""
    from rft_tui.grader_files import load_grader_dict

    try:
        return load_grader_dict(path)
    except click.BadParameter as e:
        e.param_hint = param_hint
        raise


# API request fields whose CLI argument has another name (the rest match a click parameter's name).
API_PARAM_ALIASES: dict[str, tuple[str, ...]] = {
    "grader": ("grader_file", "grader"), "fine_tuning_job_id": ("job_id",), "file_id": ("file_id", "file"),
    "path": ("file", "paths", "path"), "against": ("against",),
}


def cli_param_name(api_param: str) -> str:
    """The command-line argument behind an API error's `param`, as the user typed it (`-t/--training-file`)."""
    ctx = click.get_current_context(silent=True)
    name = api_param.removeprefix("method.reinforcement.")
    if name.startswith("hyperparameters."):
        return f"--hp {name.split('.', 1)[1]}"
    if ctx is None:
        return api_param
    head = name.split(".")[0]
    by_name = {p.name: p for p in ctx.command.params}
    for candidate in API_PARAM_ALIASES.get(head, (head,)):
        param = by_name.get(candidate)
        if isinstance(param, click.Option):
            return "/".join(sorted(param.opts, key=len))
        if isinstance(param, click.Argument):
            return param.human_readable_name
    return api_param


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn client errors into one clear line on stderr and exit code 1 (never a traceback)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiRequestError as e:
            where = f" [{cli_param_name(e.param)}]" if e.param else ""
            click.echo(f"Error{where}: {e.error.message}", err=True)
            sys.exit(1)
        except DaemonNotRunning as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(3)
        except DaemonError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)

    return wrapper
