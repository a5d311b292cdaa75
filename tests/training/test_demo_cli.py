"""`rft-tui demo --no-tui` end to end, and the training CLI commands on its job (real daemon, real worker)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def rft(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rft_tui", "--home", str(home), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, "RFT_DEVICE": "cpu"})


@pytest.mark.slow
def test_demo_no_tui_trains_and_shows_base_vs_final(rft_home, tmp_path):
    try:
        out = rft(rft_home, "demo", "--no-tui", "--max-steps", "4")
        assert out.returncode == 0, out.stderr[-2000:]
        text = out.stdout
        assert "validation (base model): mean reward" in text
        assert "Validation: base model vs final" in text
        assert re.search(r"mean validation reward: base \d\.\d+ -> final \d\.\d+", text)
        assert ": succeeded" in text and "checkpoint step 4" in text
        job_id = re.search(r"(ftjob-[0-9a-f]+)", text).group(1)

        val = rft(rft_home, "jobs", "validation", job_id)
        assert val.returncode == 0 and "step 4" in val.stdout and "base" in val.stdout, val.stderr
        samples = json.loads(rft(rft_home, "jobs", "samples", job_id, "--json").stdout)
        assert samples["data"] and all(s["step"] in (1, 2, 3, 4) for s in samples["data"])
        exp = rft(rft_home, "jobs", "export", job_id, str(tmp_path / "adapter-out"))
        assert exp.returncode == 0, exp.stderr
        assert (tmp_path / "adapter-out" / "adapter" / "adapter_model.safetensors").is_file()
        again = rft(rft_home, "jobs", "export", job_id, str(tmp_path / "adapter-out"))
        assert again.returncode != 0 and "not empty" in again.stderr and "Traceback" not in again.stderr
    finally:
        rft(rft_home, "daemon", "stop", timeout=60)
