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


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_edge=False, header_style="bold", pad_edge=False, box=None)
    for h in headers:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    Console(soft_wrap=False).print(table)


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

        from daemon.client import Paths

        ctx.obj.home = str(Paths.resolve(value).home)
        os.environ["RFT_HOME"] = ctx.obj.home


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Adds `--json` (machine-readable output) and `--home` (state directory) to a command."""
    fn = click.option("--home", type=click.Path(file_okay=False), expose_value=False, callback=_set_home,
                      is_eager=True, help="State directory (overrides RFT_HOME).")(fn)
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn client errors into one clear line on stderr and exit code 1 (never a traceback)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiRequestError as e:
            where = f" [{e.param}]" if e.param else ""
            click.echo(f"Error{where}: {e.error.message}", err=True)
            sys.exit(1)
        except DaemonNotRunning as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(3)
        except DaemonError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)

    return wrapper
