"""Loopback helpers for tests that start servers: a free port, and a subprocess's first stdout line."""
from __future__ import annotations

import select
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_first_line(proc: subprocess.Popen, timeout: float) -> str:
    """The subprocess's first stdout line, failing (with its stderr) if none arrives in time."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            return proc.stdout.readline().strip()
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"twin view printed no URL; stderr: {proc.stderr.read()[-2000:]}")
