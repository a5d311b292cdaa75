"""`graders` is self-contained: it imports nothing of ours (the daemon, the worker and the CLI import it)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import graders


def test_graders_imports_nothing_of_ours() -> None:
    root = Path(graders.__file__).parent
    modules = sorted(f"graders.{m.name}" for m in pkgutil.walk_packages([str(root)]) if not m.ispkg)
    modules += [f"graders.impl.{m.name}" for m in pkgutil.iter_modules([str(root / "impl")])]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "graders.loader" in loaded and "graders.impl.similarity" in loaded
    assert not [m for m in loaded if m.split(".")[0] in ("daemon", "rft_tui", "tests")]
