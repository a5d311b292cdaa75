"""A worker that ignores SIGTERM (a hung training step), so cancel must escalate to SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import time

from daemon.worker.reporting import JobReporter


def main(job_id: str) -> int:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    reporter = JobReporter(os.environ["RFT_HOME"], job_id)
    reporter.started(1000)
    step = 0
    while True:
        step += 1
        reporter.log_step(step, {"reward": 0.0})
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
