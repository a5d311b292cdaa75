"""TUI benchmark; run on demand: `.venv/bin/python tests/bench/tui.py` (prints JSON).

- first_frame_s: launching the real `rft-tui --socket S` under tmux until the Jobs screen is painted
  (the recorded jobs' rows are on the pane), median of several launches;
- rss_mb: resident memory of that TUI process once the Jobs screen shows (psutil);
- metric_latency_s: from a metric row being committed by a worker (`JobReporter.log_step`, timestamped
  in this process) to that step's row appearing in the Rewards tab's metrics table (app run headless
  in-process with `run_test`), p50/p95 over many steps.
Targets: first frame <= 1.5 s, memory <= 150 MB, p95 latency <= 0.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from daemon.worker.reporting import JobReporter  # noqa: E402
from tests.support.daemon_proc import DaemonProcess, kill_job_workers  # noqa: E402
from tests.tui import recorded  # noqa: E402

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
RFT_TUI = str(Path(sys.executable).parent / "rft-tui")
TARGETS = {"first_frame_s": 1.5, "rss_mb": 150.0, "metric_latency_p95_s": 0.5}


def first_frame(daemon: DaemonProcess, runs: int) -> dict[str, float | list[float]]:
    times, rss = [], []
    for _ in range(runs):
        server = f"rft-bench-{uuid.uuid4().hex[:8]}"
        tmux = [TMUX, "-L", server]
        env = f"env RFT_HOME={daemon.home} TERM=xterm-256color PYTHONPATH={REPO}"
        try:
            t0 = time.perf_counter()
            subprocess.run([*tmux, "new-session", "-d", "-x", "100", "-y", "30",
                            f"{env} {RFT_TUI} --socket {daemon.socket}"], check=True)
            while True:
                screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout
                if "succeeded" in screen and "ftjob-a1c3e5f7" in screen:
                    times.append(time.perf_counter() - t0)
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("the Jobs screen did not appear within 30 s:\n" + screen)
                time.sleep(0.005)
            pid = int(subprocess.run([*tmux, "display-message", "-p", "#{pane_pid}"], capture_output=True,
                                     text=True).stdout.strip())
            import psutil

            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
            rss.append(sum(p.memory_info().rss for p in procs) / 2**20)
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True)
    return {"first_frame_s": statistics.median(times), "first_frame_runs_s": [round(t, 3) for t in times],
            "rss_mb": statistics.median(rss)}


async def metric_latency(daemon: DaemonProcess, steps: int, interval: float) -> dict[str, float]:
    from rft_tui.app import RftApp
    from rft_tui.screens.job import JobScreen
    from rft_tui.widgets.metrics_table import MetricsTable

    job_id = recorded.SUCCEEDED
    reporter = JobReporter(daemon.home, job_id)
    app = RftApp(daemon.async_client(), clock=lambda: float(recorded.CLOCK))
    latencies: list[float] = []
    async with app.run_test(size=(100, 30)) as pilot:
        app.action_open_job(job_id)
        while not (isinstance(app.screen, JobScreen) and app.screen.job_id == job_id
                   and len(app.screen.view.metrics) == 40):
            await pilot.pause(0.01)
        screen = app.screen
        assert isinstance(screen, JobScreen)
        screen.action_show_tab("rewards")
        while not app.stream_connected:
            await pilot.pause(0.01)
        table = screen.query_one("#metrics", MetricsTable)
        start = reporter.last_step() or 0
        for i in range(1, steps + 1):
            step = start + i
            t0 = time.perf_counter()
            await asyncio.to_thread(reporter.log_step, step, {"reward": 0.5, "loss": 0.1, "kl": 0.01})
            while table.last_step != step:
                await asyncio.sleep(0.001)
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"step {step} did not reach the Rewards tab within 10 s")
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(interval)
    reporter.close()
    await app.client.aclose()
    latencies.sort()
    return {"metric_latency_p50_s": statistics.median(latencies),
            "metric_latency_p95_s": latencies[int(0.95 * (len(latencies) - 1))],
            "metric_latency_max_s": latencies[-1], "metric_steps": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between metric rows")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="rft-bench-"))
    os.environ["RFT_HOME"] = str(home)
    recorded.record(home)
    daemon = DaemonProcess(home, env=recorded.IDLE_WORKER_ENV).start()
    try:
        result: dict[str, object] = {}
        if os.path.exists(TMUX):
            result.update(first_frame(daemon, args.launches))
        else:
            result["first_frame_s"] = None
            result["first_frame_skipped"] = "tmux not installed"
        result.update(asyncio.run(metric_latency(daemon, args.steps, args.interval)))
        result = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}
        result["targets"] = TARGETS
        result["meets_targets"] = {k: (result.get(k) is not None and result[k] <= t)  # type: ignore[operator]
                                   for k, t in TARGETS.items()}
        result["cpus"] = os.cpu_count()
        print(json.dumps(result, indent=2))
    finally:
        daemon.stop()
        kill_job_workers(daemon.paths)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
