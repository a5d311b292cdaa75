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
        assert re.search(r"^change vs base: [+-]\d\.\d{3} \[-?\d\.\d\d, -?\d\.\d\d\]  p[<=][\d.]+  \d+↑ \d+↓", text,
                         re.M), text
        assert "  exact: " in text and "  close: " in text  # per sub-grader
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


@pytest.mark.slow
def test_demo_in_a_pipe_says_it_skips_the_tui_and_prints_plain_progress(fake_worker_daemon) -> None:
    """`rft-tui demo | tee log` silently dropped the TUI; it says so in one line and prints plain lines."""
    out = subprocess.run([sys.executable, "-m", "rft_tui", "--socket", fake_worker_daemon.socket, "demo",
                          "--max-steps", "20"], capture_output=True, text=True, timeout=300, cwd=REPO,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-2000:]
    notes = [ln for ln in out.stderr.splitlines() if "not a terminal" in ln]
    assert len(notes) == 1 and "no TUI" in notes[0]
    assert "\r" not in out.stdout + out.stderr
    assert re.search(r"^step +20/20 +train reward", out.stdout, re.M) and ": succeeded" in out.stdout
    # the final table's compare line: the change with its 95% interval, the sign test and rows better/worse
    line = r"^change vs base: \+0\.500 \[0\.\d\d, 0\.\d\d\]  p=0\.062  5↑ 0↓ 5="
    assert re.search(line, out.stdout, re.M), out.stdout


def test_model_build_progress_without_a_terminal_is_plain_lines_and_ends_with_done() -> None:
    """The build showed a bar that stopped at 44% with no end line (and \\r spam in logs)."""
    import io
    import time

    from daemon.models import BuildProgress

    stream = io.StringIO()
    progress = BuildProgress(True, time.time(), stream=stream)
    progress.LINE_EVERY_S = 0.0  # a line per step here; every few seconds in real use
    for step in range(1, 4):
        progress.step(step, 0.1 * step)
        progress.evaluated(1.0 / step, 0.1 * step)
    progress.done(3, 0.36)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0].startswith("building builtin:tiny-arith: supervised training on CPU until 35% exact match")
    assert [re.sub(r", \d+ s$", "", ln) for ln in lines[1:4]] == [
        f"building builtin:tiny-arith: step {s}, exact match {0.1 * s:.2f}" for s in (1, 2, 3)]
    assert re.fullmatch(r"built builtin:tiny-arith in \d+ s: 3 steps, exact match 0\.36 \(done\)", lines[-1])


@pytest.mark.slow
def test_tools_demo_learns_to_call_the_add_tool(rft_home: Path, tools_model_cache: Path) -> None:
    """`rft-tui demo --task tools`: validation reward up by >= 0.15 and the tool-call rate up, in a few steps,
    with its own add tool server (gone once the job ends) and the episodes stored."""
    import httpx

    try:
        out = rft(rft_home, "demo", "--task", "tools", "--no-tui", "--max-steps", "8")
        assert out.returncode == 0, out.stderr[-2000:]
        text = out.stdout
        rewards = re.search(r"mean validation reward: base (\d\.\d+) -> final (\d\.\d+)", text)
        rates = re.search(r"tool-call rate \(validation episodes that called add\): base (\d+)% -> final (\d+)%", text)
        assert rewards and rates, text
        assert float(rewards.group(2)) - float(rewards.group(1)) >= 0.15, text
        assert int(rates.group(2)) > int(rates.group(1)), text
        assert re.search(r"validation \(base model\): mean reward .*, tool calls \d+% of episodes", text)
        assert ": succeeded" in text
        job_match = re.search(r"(ftjob-[0-9a-f]+)", text)
        url_match = re.search(r"add tool at (http://127\.0\.0\.1:\d+/add)", text)
        assert job_match and url_match, text
        job_id, url = job_match.group(1), url_match.group(1)
        with pytest.raises(httpx.ConnectError):
            httpx.post(url, json={"arguments": {"a": 1, "b": 2}}, timeout=5)  # the demo stopped its tool

        rows = json.loads(rft(rft_home, "jobs", "validation", job_id, "--json").stdout)["data"]
        called = [r for r in rows if r["tool_calls"]]
        assert called and all(r["output_messages"][0]["role"] == "assistant" for r in rows)
        call = called[0]["tool_calls"][0]
        assert call["name"] == "add" and call["error"] is None and call["latency_ms"] is not None
        assert call["result"] == str(call["arguments"]["a"] + call["arguments"]["b"])
    finally:
        rft(rft_home, "daemon", "stop", timeout=60)


def test_tools_demo_refuses_a_remote_daemon_in_one_line(rft_home: Path) -> None:
    """Its add tool listens on this machine's 127.0.0.1: a worker on another machine could not reach it."""
    out = rft(rft_home, "--url", "http://192.0.2.1:9", "demo", "--task", "tools", "--no-tui", timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "run `rft-tui demo --task tools` on the daemon's machine" in out.stderr
