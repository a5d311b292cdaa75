"""What the worker's interpreter has installed, read from package metadata (no torch/vLLM import, ~50 ms).

The worker may run in another environment than the daemon (`RFT_WORKER_PYTHON`, daemon/worker_protocol.py
`worker_python`), so "is vLLM there?" is asked of that interpreter. Cached for a minute: creating a job
or changing a setting in the New-job form must not start a process each time.
"""

from __future__ import annotations

import json
import subprocess
import time

from daemon.worker_protocol import worker_python

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "vllm", "bitsandbytes", "fastapi")
CACHE_S = 60.0
_PROBE = (
    "import importlib.metadata as m, json, sys\n"
    "out = {'python': sys.version.split()[0], 'executable': sys.executable, 'requires': {}}\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        out[name] = m.version(name)\n"
    "        out['requires'][name] = m.requires(name) or []\n"
    "    except m.PackageNotFoundError:\n"
    "        out[name] = None\n"
    "print(json.dumps(out))\n"
)
_cache: dict[str, tuple[float, dict[str, object]]] = {}


def installed(python: str | None = None) -> dict[str, object]:
    """{package: version or None, 'python': ..., 'executable': ..., 'requires': {pkg: [requirement, ...]}}."""
    exe = python or worker_python()
    hit = _cache.get(exe)
    if hit and time.monotonic() - hit[0] < CACHE_S:
        return hit[1]
    try:
        out = subprocess.run([exe, "-c", _PROBE, *PACKAGES], capture_output=True, text=True, timeout=20, check=False)
        data: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        data = {}
    data.setdefault("executable", exe)
    _cache[exe] = (time.monotonic(), data)
    return data


def vllm_version() -> str | None:
    v = installed().get("vllm")
    return v if isinstance(v, str) else None
