"""Datasets tests: one real daemon per module (they only read and import files), the real CLI as a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon_proc import REPO, DaemonProcess

_RUN = "import sys; from rft_tui.cli import run; sys.exit(run())"


@dataclass
class Cli:
    """`rft-tui --socket SOCK ...` as a user runs it."""

    daemon: DaemonProcess

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
        return subprocess.run([sys.executable, "-c", _RUN, "--socket", self.daemon.socket, *args],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=120)

    def json(self, *args: str) -> tuple[int, Any]:
        out = self(*args, "--json")
        return out.returncode, json.loads(out.stdout) if out.stdout.strip() else None


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[DaemonProcess]:
    home = Path(tempfile.mkdtemp(prefix="rft-ds-"))
    d = DaemonProcess(home, env={"RFT_DEVICE": "cpu"}).start()
    yield d
    d.stop()
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def cli(shared_daemon: DaemonProcess) -> Cli:
    return Cli(shared_daemon)


def store_state(d: DaemonProcess) -> tuple[list[tuple[Any, ...]], list[str]]:
    """Everything an import could leave behind: the files table and the files directory."""
    conn = sqlite3.connect(str(d.paths.db), timeout=30)
    try:
        rows = conn.execute("SELECT id, sha256, bytes FROM files ORDER BY id").fetchall()
    finally:
        conn.close()
    listing = sorted(p.name for p in d.paths.files.iterdir()) if d.paths.files.exists() else []
    return rows, listing


def write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def row(prompt: str = "1+2=", answer: str = "3", **extra: Any) -> str:
    return json.dumps({"messages": [{"role": "user", "content": prompt}], "answer": answer, **extra})
