"""The training stack's versions: recorded in each job's snapshot at creation, compared by the worker at start.

A job created on the workstation may run in another Python (a cluster's `--python`, `RFT_WORKER_PYTHON`).
The worker says where that Python differs from the snapshot: a missing library fails the job at once with the
fix; a different version is a warning event (results may differ, the job still runs). Nothing is installed:
clusters are often offline, and the user owns that environment.
"""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from daemon import __version__

LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate")


def installed(lib: str) -> str | None:
    try:
        return importlib.metadata.version(lib)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """What a snapshot records: rft-tui, Python and each training library (None: not installed)."""
    return {"rft-tui": __version__, "python": platform.python_version(), **{lib: installed(lib) for lib in LIBRARIES}}


@dataclass(frozen=True)
class StackCheck:
    missing: tuple[tuple[str, str], ...]  # (library, the version the snapshot records)
    different: tuple[tuple[str, str, str], ...]  # (library, here, in the snapshot)
    here: Mapping[str, str | None]

    def failure(self) -> str | None:
        if not self.missing:
            return None
        where = f"{sys.executable} on {socket.gethostname()}"
        lacks = ", ".join(f"{lib} (the job was created with {want})" for lib, want in self.missing)
        pins = " ".join(f"{lib}=={want}" for lib, want in self.missing)
        return (f"the worker's Python ({where}) lacks {lacks}: install the job's versions there "
                f"(pip install {pins}) or point the cluster's --python at one that has them")

    def warning(self) -> str | None:
        if not self.different:
            return None
        differs = "; ".join(f"{lib} {have} here, {want} in the snapshot" for lib, have, want in self.different)
        return (f"the worker's Python on {socket.gethostname()} differs from the job's snapshot: "
                f"{differs} (the job runs; results may differ from a run with the recorded versions)")


def check_stack(recorded: Mapping[str, str | None], here: Mapping[str, str | None] | None = None) -> StackCheck:
    """Compare the snapshot's versions with this Python's (`here`: library_versions() unless given)."""
    here = dict(library_versions() if here is None else here)
    missing: list[tuple[str, str]] = []
    different: list[tuple[str, str, str]] = []
    for lib in ("rft-tui", *LIBRARIES):
        want, have = recorded.get(lib), here.get(lib)
        if want is None:
            continue  # a snapshot from before this library was recorded, or not installed at creation either
        if have is None:
            missing.append((lib, want))
        elif have != want:
            different.append((lib, have, want))
    return StackCheck(tuple(missing), tuple(different), here)
