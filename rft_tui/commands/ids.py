"""Short ids: any unique prefix of a job or file id works, as in git and docker (`ftjob-22777d66`, `22777d66`)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from daemon.client import Client

FULL_HEX = 24  # ids are "<prefix>-" + 24 hex digits
PAGE = 1000
SHOWN_CANDIDATES = 10


class AmbiguousId(click.ClickException):
    """A prefix that matches more than one id: the message lists them (exit 1)."""


def _is_full(ref: str, prefix: str) -> bool:
    return ref.startswith(prefix) and len(ref) == len(prefix) + FULL_HEX


def _all_ids(page: Callable[[str | None], Any]) -> Iterator[str]:
    after: str | None = None
    while True:
        listing = page(after)
        yield from (obj.id for obj in listing.data)
        if not listing.has_more or not listing.data:
            return
        after = listing.data[-1].id


def _resolve(ref: str, prefix: str, kind: str, param: str, page: Callable[[str | None], Any]) -> str:
    """The one id starting with `ref` (with or without `prefix`); `ref` unchanged when none does."""
    ref = ref.strip()
    if not ref or _is_full(ref, prefix):
        return ref
    wanted = ref if ref.startswith(prefix) else prefix + ref
    matches = sorted({i for i in _all_ids(page) if i.startswith(wanted)})
    if len(matches) == 1:
        return matches[0]
    if not matches:
        return ref  # the daemon's "no such ..." names it
    shown = "\n  ".join(matches[:SHOWN_CANDIDATES])
    more = f"\n  ... and {len(matches) - SHOWN_CANDIDATES} more" if len(matches) > SHOWN_CANDIDATES else ""
    raise AmbiguousId(f"{param} '{ref}' matches {len(matches)} {kind}s; give more characters:\n  {shown}{more}")


def job_id(client: Client, ref: str, param: str = "JOB_ID") -> str:
    """A full job id from a unique prefix (`ftjob-22777d66` or `22777d66`)."""
    return _resolve(ref, "ftjob-", "job", param, lambda after: client.list_jobs(after=after, limit=PAGE))


def file_id(client: Client, ref: str, param: str = "FILE_ID") -> str:
    """A full file id from a unique prefix (`file-3fa2` or `3fa2`)."""
    return _resolve(ref, "file-", "file", param, lambda after: client.list_files(after=after, limit=PAGE))


def looks_like_file_id(ref: str) -> bool:
    """`file-…`: a stored file's id (or prefix) rather than a local path."""
    return ref.startswith("file-")


def not_a_file(ref: str) -> str:
    """Why `ref` is neither a file id nor a file, with the closest file names beside it (a typo is the usual cause)."""
    p = Path(ref).expanduser()
    try:
        siblings = [c.name for c in p.parent.iterdir() if c.is_file()] if p.parent.is_dir() else []
    except OSError:
        siblings = []
    close = difflib.get_close_matches(p.name, siblings, n=2, cutoff=0.8)
    hint = f" (did you mean {' or '.join(str(p.parent / c) if str(p.parent) != '.' else c for c in close)}?)" \
        if close else ""
    return f"{ref} is neither a file id nor an existing file{hint}"
