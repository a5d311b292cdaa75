"""Shared fixtures: every test gets its own RFT_HOME; `daemon` is a real daemon process."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon_proc import DaemonProcess, kill_job_workers, module_daemon

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# Cache bytecode (and pytest's rewritten test modules) even where PYTHONDONTWRITEBYTECODE is set: a test run
# starts hundreds of Python processes (daemons, workers, CLI calls, pytest-xdist workers), and without the cache
# each one compiles our modules again (measured: a fifth of a daemon's start-up CPU, a third of collection).
# `__pycache__/` is git-ignored.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


@pytest.fixture(autouse=True)
def rft_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short temp RFT_HOME (Unix socket paths must stay under ~100 bytes)."""
    home = Path(tempfile.mkdtemp(prefix="rft-"))
    monkeypatch.setenv("RFT_HOME", str(home))
    monkeypatch.setenv("RFT_DEVICE", "cpu")
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def daemon_factory(rft_home: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    """Start daemons on this test's RFT_HOME (with extra env); all are stopped and their workers killed after."""
    started: list[DaemonProcess] = []

    def make(env: dict[str, str] | None = None, tcp: str | None = None, start: bool = True) -> DaemonProcess:
        d = DaemonProcess(rft_home, env=env, tcp=tcp)
        started.append(d)
        return d.start() if start else d

    yield make
    for d in started:
        d.stop()
    kill_job_workers(DaemonProcess(rft_home).paths)


@pytest.fixture
def daemon(daemon_factory) -> DaemonProcess:
    """A real daemon with the real training worker."""
    return daemon_factory()


@pytest.fixture
def fake_worker_daemon(daemon_factory) -> DaemonProcess:
    """A real daemon whose jobs run tests/support/fake_worker.py (writes metrics the worker's way, fast)."""
    return daemon_factory(env={"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_CANCEL_GRACE_S": "3"})


@pytest.fixture(scope="module")
def module_fake_worker_daemon() -> Iterator[DaemonProcess]:
    """One fake-worker daemon for a whole test module, on its own RFT_HOME, for tests that only read, are
    refused (a 400 or 404 changes nothing another test of the module looks at), or look only at the jobs and
    files they create themselves (never at listings, counts or logs another test could add to): a daemon start
    and stop costs about 2 s of a 2-core machine, more than such a test itself."""
    yield from module_daemon("rft-m-", {"RFT_WORKER_MODULE": "tests.support.fake_worker", "RFT_CANCEL_GRACE_S": "3"})


def _model_cache_dir() -> Path:
    """A persistent cache shared by test sessions (the build is seeded and versioned, so reuse is safe)."""
    if os.environ.get("RFT_MODEL_CACHE"):
        return Path(os.environ["RFT_MODEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rft-tui" / "test-models"


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Build `builtin:tiny-arith` once per machine (or reuse the cache); pass it to daemons as RFT_MODEL_CACHE."""
    from daemon.models import ensure_builtin_model
    from daemon.paths import Paths

    cache = _model_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("RFT_MODEL_CACHE")
    os.environ["RFT_MODEL_CACHE"] = str(cache)
    try:
        ensure_builtin_model(Paths.resolve(cache / "home"), progress=False)
    finally:
        if old is None:
            os.environ.pop("RFT_MODEL_CACHE")
    return cache


@pytest.fixture(scope="session")
def tools_model_cache(model_cache: Path) -> Path:
    """`builtin:tiny-tools` in the same shared cache (built once per machine, ~1 min on 2 cores)."""
    from daemon.models import TINY_TOOLS, ensure_builtin_model
    from daemon.paths import Paths

    old = os.environ.get("RFT_MODEL_CACHE")
    os.environ["RFT_MODEL_CACHE"] = str(model_cache)
    try:
        ensure_builtin_model(Paths.resolve(model_cache / "home"), TINY_TOOLS, progress=False)
    finally:
        if old is None:
            os.environ.pop("RFT_MODEL_CACHE")
        else:
            os.environ["RFT_MODEL_CACHE"] = old
    return model_cache
