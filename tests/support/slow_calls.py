"""Functions an isolated worker runs in its child process (importable by name, as spawn needs)."""
from __future__ import annotations

import os
import time
from pathlib import Path


def child_pid(x: int) -> tuple[int, int]:
    """(x * 2, the pid that ran it)."""
    return x * 2, os.getpid()


def hang_first_time(marker: str) -> int:
    """Hangs (as a deadlocked encoder would) unless `marker` exists; creates it first, so a retry succeeds."""
    path = Path(marker)
    if not path.exists():
        path.write_text("seen")
        time.sleep(3600)
    return os.getpid()


def hang_always() -> None:
    time.sleep(3600)


def die() -> None:
    os._exit(3)


def refuse(message: str) -> None:
    raise ValueError(message)
