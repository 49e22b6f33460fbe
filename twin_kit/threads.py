"""Torch CPU thread counts for a block of work, restored afterwards."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block on `n` torch intra-op threads (n <= 0 keeps the current count).

    Small per-frame tensors pay more for the thread pool's fork/join than for the work (measured 10x on a
    busy CPU in the sensors); large sweeps want every core. The previous count is restored on exit.
    """
    import torch

    old = torch.get_num_threads()
    n = int(n) if n > 0 else old
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != old:
            torch.set_num_threads(old)
