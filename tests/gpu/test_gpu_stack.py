"""The GPU set (requirements/gpu.txt): one set of training pins with the CPU set, and it resolves with vLLM.

Why a separate environment rather than a `[gpu]` extra: every vLLM release pins fastapi<0.137.0, the daemon
runs 0.163.2 (docs/gpu.md). The resolve asks the package index (pip's ordinary client), so it is `slow`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GPU_TXT = REPO / "requirements" / "gpu.txt"


def pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r'\s*"?([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^",;\s]+)', line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_training_pins_are_the_cpu_sets() -> None:
    gpu, cpu = pins(GPU_TXT.read_text()), pins((REPO / "pyproject.toml").read_text())
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "pydantic", "sqlite-utils", "psutil"):
        assert gpu[name] == cpu[name], name
    assert {"vllm", "bitsandbytes"} <= gpu.keys() and "fastapi" not in gpu


@pytest.mark.slow
def test_the_gpu_set_resolves(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "--report", str(report), "-r", str(GPU_TXT)], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    chosen = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}
    want = pins(GPU_TXT.read_text())
    for name in ("vllm", "torch", "transformers", "trl", "peft", "bitsandbytes"):
        assert chosen[name].split("+")[0] == want[name], name
    assert chosen["fastapi"].startswith("0.13")  # vLLM's own pin: the reason this is a separate environment
