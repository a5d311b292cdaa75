"""The GPU stack is the `[gpu]` extra of the one environment: its pins, and that it resolves with everything else.

The daemon's fastapi is pinned inside vLLM 0.30.0's `fastapi[standard]>=0.133.0,<0.137.0` so that one
environment holds both (docs/gpu.md gives the reason for every pin). The resolve asks the package index (pip's
ordinary client) and takes ~40 s, so it is `slow`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]


def pins(requirements: list[str]) -> dict[str, str]:
    """name -> exact version of every `name==version` (or `name[extra]==version`) requirement."""
    out = {}
    for line in requirements:
        m = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^,;\s]+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def test_the_gpu_extra_pins_vllm_and_bitsandbytes_and_the_daemon_fits_vllms_fastapi() -> None:
    gpu, base = pins(EXTRAS["gpu"]), pins(PROJECT["dependencies"])
    assert gpu == {"vllm": "0.30.0", "bitsandbytes": "0.50.2"}
    assert len(gpu) == len(EXTRAS["gpu"])  # nothing unpinned slipped in
    # vLLM 0.30.0 asks fastapi[standard]>=0.133.0,<0.137.0 and torch==2.13.0 (its metadata, docs/gpu.md)
    assert Version("0.133.0") <= Version(base["fastapi"]) < Version("0.137.0")
    assert base["torch"] == "2.13.0" and base["transformers"] == "5.24.0" and base["trl"] == "1.16.0"
    assert not (REPO / "requirements" / "gpu.txt").exists()  # one set of pins, in pyproject.toml


@pytest.mark.slow
def test_the_gpu_extra_resolves_with_the_cpu_set_and_the_tests(tmp_path: Path) -> None:
    """`pip install --dry-run -e .[gpu,test,embeddings]` picks exactly our pins, and vLLM's own ranges admit them."""
    report = tmp_path / "report.json"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "--report", str(report), "torch==2.13.0", "-e", f"{REPO}[gpu,test,embeddings]"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    chosen = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] for i in installs}
    want = pins(PROJECT["dependencies"] + EXTRAS["gpu"] + EXTRAS["test"] + EXTRAS["embeddings"])
    for name, version in want.items():
        assert chosen[name].split("+")[0] == version, (name, chosen[name])
    vllm = next(i["metadata"] for i in installs if i["metadata"]["name"].lower() == "vllm")
    for spec in vllm["requires_dist"]:
        req = Requirement(spec)
        if req.name.lower() in ("fastapi", "torch", "transformers", "starlette", "pydantic", "openai") \
                and req.marker is None:
            assert req.specifier.contains(chosen[req.name.lower()].split("+")[0]), (spec, chosen[req.name.lower()])
