"""The CLI, TUI and wire schema never pull in torch & co (start-up speed; the daemon stays light too)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "trl", "peft", "accelerate")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_cli_and_client_import_no_heavy_libraries() -> None:
    mods = _modules_after("import rft_tui.cli, daemon.api, daemon.client")
    assert not [m for m in HEAVY if m in mods]


def test_daemon_server_imports_no_heavy_libraries() -> None:
    mods = _modules_after("import daemon.server, daemon.routes.jobs, daemon.routes.files, daemon.scheduler")
    assert not [m for m in HEAVY if m in mods]


def test_wire_schema_imports_only_pydantic_and_stdlib() -> None:
    mods = _modules_after("import daemon.api")
    ours = {m for m in mods if m.split(".")[0] in {"daemon", "rft_tui", "graders"}}
    assert ours == {"daemon", "daemon.api"}
    assert "httpx" not in mods and "fastapi" not in mods


def test_rft_tui_imports_only_the_api_and_client_of_the_daemon() -> None:
    mods = _modules_after("import rft_tui.cli")
    daemon_mods = {m for m in mods if m.split(".")[0] == "daemon"}
    assert daemon_mods <= {"daemon", "daemon.api", "daemon.client", "daemon.paths"}


def test_rft_tui_help_runs_without_torch() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "rft_tui", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert not [m for m in HEAVY if m in imported]
