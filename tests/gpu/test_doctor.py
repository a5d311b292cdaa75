"""`rft-tui doctor` and `rft-tui models` on this machine, through a real daemon (its worker interpreter probed
for torch/CUDA/vLLM), with a real Hugging Face cache directory holding a Qwen2-style model's config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import api
from graders.sandbox_bwrap import sandbox_mode
from tests.daemon.test_model_check import COMMIT, fake_hf_cache
from tests.gpu.configs import QWEN2_05B
from tests.support.daemon_proc import REPO

WANTED = {"python", "torch", "cuda", "vllm", "bitsandbytes", "training stack", "sandbox", "disk", "memory", "hf cache"}


def rft(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rft_tui", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RFT_HOME": str(home), "PYTHONPATH": str(REPO), **env},
                          stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_doctor_and_models_on_this_machine(tmp_path: Path) -> None:
    cache = fake_hf_cache(tmp_path / "hf", "acme/qwen-mini")
    config = cache / "models--acme--qwen-mini" / "snapshots" / COMMIT / "config.json"
    config.resolve().write_text(json.dumps(QWEN2_05B))
    home = tmp_path / "home"
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    try:
        out = rft(home, env, "doctor", "--json")
        report = api.DoctorReport.model_validate_json(out.stdout)
        checks = {c.name: c for c in report.checks}
        assert WANTED <= checks.keys(), checks.keys()
        assert out.returncode == (0 if report.ok else 1)
        assert report.ok == all(c.status != "fail" for c in checks.values())
        assert checks["python"].status == "ok" and checks["torch"].status == "ok" and "2.13.0" in checks["torch"].detail
        for c in checks.values():
            assert c.status == "ok" or c.fix, c  # every line that is not ok says what fixes it
        # the sandbox line is the graders' own probe
        assert (checks["sandbox"].status == "ok") == (sandbox_mode() == "bubblewrap")
        # no GPU here: a warning with the fix, and vLLM is not needed
        if not Path("/proc/driver/nvidia/version").exists():
            assert checks["cuda"].status == "warn" and "setup.sh gpu" in (checks["cuda"].fix or "")
        assert [m.id for m in report.models] == ["acme/qwen-mini"] and report.models[0].size_bytes
        text = rft(home, env, "doctor")
        assert "sandbox:" in text.stdout and "hf cache:" in text.stdout and "model acme/qwen-mini" in text.stdout

        listed = rft(home, env, "models", "--json")
        assert listed.returncode == 0, listed.stderr
        models = {m["id"]: m for m in json.loads(listed.stdout)["data"]}
        assert models["builtin:tiny-arith"]["source"] == "builtin" and models["builtin:tiny-arith"]["fits"]
        qwen = models["acme/qwen-mini"]
        assert qwen["object"] == "model" and qwen["parameters"] == 494_032_768 and qwen["size_bytes"] > 0
        assert qwen["fits"] in (True, False) and qwen["verdict"]
    finally:
        rft(home, env, "daemon", "stop")
