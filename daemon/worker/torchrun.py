"""`python -m daemon.worker.torchrun ARGS...`: torchrun that survives the pause signal.

The daemon pauses a job by sending SIGUSR1 to its process group. torchrun itself has no handler for it
(the default action kills it, and with it every rank), so this wrapper ignores SIGUSR1 and execs torchrun;
the ranks install their own handler (ControlFlags), agree to stop at the next step boundary, checkpoint,
and exit 0, and torchrun then exits normally. (The daemon starts it with SIGUSR1 blocked; the ranks unblock
it once their handler is in place, and a pause asked before then reaches them through the job row.)
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # kept across exec; the ranks override it with a handler
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the stall's stack dump is for the ranks (faulthandler)
    # torchrun's own default, said without its multi-line warning in the job log (ranks set their threads)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", *sys.argv[1:]])


if __name__ == "__main__":
    main()
