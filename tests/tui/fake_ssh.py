#!/usr/bin/env python3
"""A stand-in for `ssh` in tests: runs the remote command locally, and `-N -L A:B host` really forwards.

Forwarding is a real peer: every connection to the local Unix socket A is relayed byte for byte to B.
No network is involved. Each invocation is appended to $FAKE_SSH_LOG (one JSON list per line).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading


def relay(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def forward(local: str, remote: str) -> int:
    if os.path.exists(local):
        os.unlink(local)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(local)
    server.listen(16)
    while True:
        client, _ = server.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(remote)
        threading.Thread(target=relay, args=(client, upstream), daemon=True).start()
        threading.Thread(target=relay, args=(upstream, client), daemon=True).start()


def main(argv: list[str]) -> int:
    if os.environ.get("FAKE_SSH_LOG"):
        with open(os.environ["FAKE_SSH_LOG"], "a") as f:
            f.write(json.dumps(argv) + "\n")
    args = list(argv)
    no_command, spec = False, None
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt == "-N":
            no_command = True
        elif opt == "-o":
            args.pop(0)
        elif opt == "-L":
            spec = args.pop(0)
    if not args:
        print("usage: ssh [options] host [command]", file=sys.stderr)
        return 255
    host, command = args[0], args[1:]
    if host == "unreachable":
        print(f"ssh: Could not resolve hostname {host}", file=sys.stderr)
        return 255
    if no_command and spec:
        local, remote = spec.split(":", 1)
        return forward(local, remote)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
