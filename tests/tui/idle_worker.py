"""A worker that keeps a recorded "running" job running without writing anything (for fixed snapshots).

It reports nothing until the daemon asks it to stop: cancel (SIGTERM) or pause (SIGUSR1).
"""

from __future__ import annotations

import os
import sys

from daemon.worker.reporting import ControlFlags, JobReporter


def main(job_id: str) -> int:
    flags = ControlFlags()
    flags.install()
    reporter = JobReporter(os.environ["RFT_HOME"], job_id)
    while not flags.stop_requested:
        flags.cancel.wait(0.2)
        if reporter.requested_action() in ("cancel", "pause"):
            break
    outcome = "paused" if flags.pause.is_set() or reporter.requested_action() == "pause" else "cancelled"
    reporter.finish(outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
