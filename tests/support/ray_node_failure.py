"""A Ray job entrypoint for tests/clusters/test_ray.py: two real actors as ray_launch starts them, one per
node's torchrun stand-in. The first starts a long child with the parent-death signal (as torchrun is started)
and waits on it; the second exits 3 once that child runs. `ray_launch.wait_nodes` must return 3 at once and
kill the first actor, whose child then dies too. Prints `CODE n` and `CHILD pid`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import ray

from daemon.executors.ray_launch import _die_with_parent, wait_nodes


@ray.remote(num_cpus=0)
class Node:
    def run(self, rank: int, pidfile: str) -> int:
        if rank == 1:  # the failing node: once the other node's "torchrun" runs
            while not os.path.exists(pidfile):
                time.sleep(0.05)
            return 3
        child = subprocess.Popen(["sleep", "300"], preexec_fn=_die_with_parent)
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(child.pid))
        os.rename(pidfile + ".tmp", pidfile)
        return child.wait()


def main(pidfile: str) -> int:
    ray.init()
    actors = [Node.remote() for _ in range(2)]  # type: ignore[attr-defined]
    started = time.monotonic()
    code = wait_nodes({a.run.remote(i, pidfile): i for i, a in enumerate(actors)}, actors)
    with open(pidfile) as f:
        print(f"CHILD {f.read().strip()}", flush=True)
    print(f"CODE {code} after {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
