"""The CLI, TUI and wire schema never pull in torch & co (start-up speed; the daemon stays light too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

HEAVY = ("torch", "transformers", "trl", "peft", "accelerate")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_cli_and_client_import_no_heavy_libraries() -> None:
    mods = _modules_after("import rft_tui.cli, daemon.api, daemon.client")
    assert not [m for m in HEAVY if m in mods]


ROUTE_MODULES = sorted(f"daemon.routes.{p.stem}" for p in (REPO / "daemon" / "routes").glob("*.py")
                       if p.stem != "__init__")


def test_daemon_server_and_every_route_import_no_heavy_libraries() -> None:
    mods = _modules_after("import daemon.server, daemon.scheduler, daemon.files, " + ", ".join(ROUTE_MODULES))
    assert not [m for m in HEAVY if m in mods]


@pytest.mark.parametrize("route", ROUTE_MODULES)
def test_routes_never_import_the_server(route: str) -> None:
    """server -> routes -> context, never back: a route reads the daemon's context from daemon.context."""
    mods = _modules_after(f"import {route}")
    assert "daemon.server" not in mods
    assert not [m for m in HEAVY if m in mods]


def test_scheduler_does_not_import_the_worker() -> None:
    """The scheduler starts and signals workers through the stdlib-only protocol module."""
    mods = _modules_after("import daemon.scheduler")
    assert not [m for m in mods if m == "daemon.worker" or m.startswith("daemon.worker.")]
    assert "daemon.worker_protocol" in mods


def test_shared_helper_modules_are_standard_library_only() -> None:
    """What rft_tui may import beside the API and client: pid checks and log tails, text clipping, the worker
    protocol, the metric registry."""
    at_start = _modules_after("pass")  # the interpreter's own (site hooks of the editable install included)
    for module in ("daemon.procs", "daemon.text", "daemon.worker_protocol", "daemon.metrics"):
        mods = _modules_after(f"import {module}") - at_start
        ours = {m for m in mods if m.split(".")[0] in {"daemon", "rft_tui", "graders"}}
        assert ours == {"daemon", module}, (module, ours)
        third_party = {m.split(".")[0] for m in mods} - set(sys.stdlib_module_names) - {"daemon"}
        assert not third_party, (module, third_party)


def test_alarm_rules_need_only_the_api_and_the_metric_registry() -> None:
    """daemon.health (the alarm engine the TUI draws bounds with): the wire schema, the registry, nothing heavy."""
    mods = _modules_after("import daemon.health")
    ours = {m for m in mods if m.split(".")[0] in {"daemon", "rft_tui", "graders"}}
    assert ours == {"daemon", "daemon.api", "daemon.metrics", "daemon.health"}, ours
    assert not [m for m in HEAVY if m in mods] and "httpx" not in mods


def test_preflight_lives_with_the_worker() -> None:
    """Modules that import torch live under daemon/worker (or daemon/models), run out of process."""
    assert (REPO / "daemon" / "worker" / "preflight.py").is_file()
    assert not (REPO / "daemon" / "preflight.py").exists()


def test_wire_schema_imports_only_pydantic_and_stdlib() -> None:
    mods = _modules_after("import daemon.api")
    ours = {m for m in mods if m.split(".")[0] in {"daemon", "rft_tui", "graders"}}
    assert ours == {"daemon", "daemon.api"}
    assert "httpx" not in mods and "fastapi" not in mods


RFT_TUI_DAEMON_ALLOWED = {"daemon", "daemon.api", "daemon.client", "daemon.paths", "daemon.procs", "daemon.text",
                          "daemon.metrics", "daemon.health"}
TUI_MODULES = ["rft_tui.cli", "rft_tui.app", *sorted(
    f"rft_tui.{p.parent.name}.{p.stem}" for folder in ("screens", "widgets", "commands")
    for p in (REPO / "rft_tui" / folder).glob("*.py") if p.stem != "__init__")]


@pytest.mark.parametrize("module", TUI_MODULES)
def test_rft_tui_imports_only_the_api_and_client_of_the_daemon(module: str) -> None:
    """The app, every screen, widget and command: no torch & co, and of the daemon only the client side."""
    mods = _modules_after(f"import {module}")
    daemon_mods = {m for m in mods if m.split(".")[0] == "daemon"}
    assert daemon_mods <= RFT_TUI_DAEMON_ALLOWED, daemon_mods - RFT_TUI_DAEMON_ALLOWED
    assert not [m for m in HEAVY if m in mods]


def test_rft_tui_help_runs_without_torch() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "rft_tui", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert not [m for m in HEAVY if m in imported]
