"""Threads: torch CPU thread counts for a block of work (restored afterwards), and an iterator run ahead in a
background thread."""
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


class Prefetch:
    """Iterate `source` in a background thread, at most `depth` items ahead of the consumer.

    The producer's work (a C extension, torch or Warp releasing the GIL) then overlaps the consumer's, e.g.
    simulating the next episodes while the last one is encoded and written. Items and exceptions arrive in
    order; `close()` (or leaving a `with` block) stops the producer at its next item and closes `source` in
    the producer's own thread, as a generator requires.
    """

    _END = object()

    def __init__(self, source, depth: int = 2, name: str = "prefetch"):
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._source = source
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        it = iter(self._source)
        try:
            for item in it:
                if not self._put((True, item)):
                    return
            self._put((True, self._END))
        except BaseException as e:  # handed to the consumer, raised there
            self._put((False, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def __iter__(self):
        return self

    def __next__(self):
        import queue

        while True:
            try:
                ok, item = self._queue.get(timeout=0.1)  # a timeout keeps Ctrl-C responsive
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise StopIteration from None
        if not ok:
            raise item
        if item is self._END:
            raise StopIteration
        return item

    def close(self, timeout: float | None = None) -> None:
        """Stop the producer (after the item it is making) and wait for it to close its source."""
        import queue

        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
