"""What live sessions and their viewers share: a stepping thread that publishes snapshots, real-time pacing, tickers.

`ThreadedSession` is the base of `LiveSession` (sim.live.session) and of policies' live policy session: one thread,
the only one that touches Warp, runs the subclass's `_loop`; commands from any thread are queued under the session
lock and taken between steps; after a step the loop publishes an immutable snapshot to the subscribers.
`RealTimePacer` keeps such a loop at real time, or says once that the CPU cannot. A `Worker` is a stoppable daemon
thread; `ticker` makes one that calls a function a fixed number of times a second, and `SnapshotDrawer` uses one to
draw the newest snapshot of a session.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Worker:
    """`run(stopping)` on a daemon thread; `stop()` sets the event `run` watches, then waits for the thread (it is
    safe before `start()`)."""

    def __init__(self, run: Callable[[threading.Event], None], name: str):
        self.run, self.name = run, name
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, args=(self.stopping,), name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)


def ticker(period: float, fn: Callable[[], None], name: str) -> Worker:
    """A `Worker` that calls `fn()` every `period` seconds until stopped."""
    def run(stopping: threading.Event) -> None:
        while not stopping.wait(period):
            fn()
    return Worker(run, name)


class ThreadedSession:
    """A loop stepped on its own thread; commands from any thread, snapshots to subscribers.

    A subclass calls `_setup(thread name, first snapshot)` first in its constructor, and defines `_loop()` (run
    until `self._stop` is set), which takes the queued commands with `_take_pending()` and publishes with `_send`.
    """

    def _setup(self, name: str, snapshot) -> None:
        self._worker = Worker(lambda _: self._run(), name)
        self._stop = self._worker.stopping
        self._lock = threading.RLock()
        self._subscribers: list[Callable] = []
        self._pending: list[tuple[str, object]] = []
        self.playing = True
        self.error: BaseException | None = None
        self.finished = threading.Event()    # the session was asked to end, or its thread ended (stopped or failed)
        self.snapshot = snapshot

    # ------------------------------------------------------------------ subscribers

    def subscribe(self, callback: Callable) -> Callable:
        """Call `callback(snapshot)` on the session's thread after every step (keep it short: hand the snapshot
        to another thread to do real work). It first gets the current snapshot, on the caller's thread."""
        with self._lock:
            self._subscribers.append(callback)
            snap = self.snapshot
        callback(snap)
        return callback

    def unsubscribe(self, callback: Callable) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    # ------------------------------------------------------------------ commands (any thread)

    def set_playing(self, playing: bool) -> None:
        self.playing = bool(playing)

    def _queue(self, kind: str, arg=None) -> None:
        """A command for the session's thread, applied between steps."""
        with self._lock:
            self._pending.append((kind, arg))

    def _take_pending(self) -> list[tuple[str, object]]:
        with self._lock:
            todo, self._pending = self._pending, []
        return todo

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._worker.stop(timeout)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - shown by the viewer and re-raised by the caller
            self.error = e
        finally:
            self.finished.set()

    def _loop(self) -> None:
        raise NotImplementedError

    def _send(self, make: Callable[[], object]):
        """Make the new snapshot under the session lock (`make()`), keep it, and hand it to every subscriber."""
        with self._lock:
            snap = self.snapshot = make()
            subscribers = list(self._subscribers)
        for cb in subscribers:
            cb(snap)
        return snap


class RealTimePacer:
    """Keeps a stepping loop at real time: after each step, how long to wait so that simulated time does not run
    ahead of the wall clock; behind it by more than a quarter second, the loop runs flat out and does not try to
    catch up later. Measures the speed (simulated seconds per wall second) over each wall second and warns once
    (`slow`, formatted with `speed`) when, past 3 simulated seconds, it is below 0.9x."""

    def __init__(self, sim_time: float, slow: str):
        self.slow = slow
        self.warned = False
        self.hold(sim_time)

    def hold(self, sim_time: float, now: float | None = None) -> None:
        """Paused (or idle) at `sim_time`: the clock restarts from here, the speed is 0 until measured again."""
        now = time.monotonic() if now is None else now
        self._anchor = self._window = (now, sim_time)
        self.speed = 0.0

    def wait_after(self, sim_time: float) -> float:
        """A step reached `sim_time`: update the speed; the seconds to wait before the next step (0: run on)."""
        now = time.monotonic()
        win_wall, win_sim = self._window
        if now - win_wall >= 1.0:
            self.speed = (sim_time - win_sim) / (now - win_wall)
            self._window = (now, sim_time)
            if self.speed < 0.9 and not self.warned and sim_time > 3.0:
                from twin_kit import warn

                warn(self.slow.format(speed=self.speed))
                self.warned = True
        anchor_wall, anchor_sim = self._anchor
        ahead = (sim_time - anchor_sim) - (now - anchor_wall)
        if ahead < -0.25:
            self._anchor = (now, sim_time)
        return max(ahead, 0.0)


class SnapshotDrawer:
    """Draws the newest snapshot a session publishes, `hz` times a second at most, on its own thread: `draw(snap)`
    when the snapshot is new, `status(snap)` at most twice a second (every tick once the session failed), and
    `tick()` (when given) first on every tick that has a snapshot. The session's thread only hands it over."""

    def __init__(self, session, hz: float, draw: Callable, status: Callable, name: str,
                 tick: Callable[[], None] | None = None):
        self.session, self.draw, self.status, self.tick = session, draw, status, tick
        self._latest = self._drawn = None
        self._last_status = 0.0
        self._ticker = ticker(1.0 / hz, self._on_tick, name)

    def start(self) -> None:
        self.session.subscribe(self._keep)
        self._ticker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop drawing (the session keeps running until its own stop)."""
        self.session.unsubscribe(self._keep)
        self._ticker.stop(timeout)

    def _keep(self, snap) -> None:
        """The session's thread: keep the newest snapshot for the drawing thread."""
        self._latest = snap

    def _on_tick(self) -> None:
        snap = self._latest
        if snap is None:
            return
        if self.tick is not None:
            self.tick()
        if snap is not self._drawn:
            self.draw(snap)
            self._drawn = snap
        now = time.monotonic()
        if now - self._last_status >= 0.5 or self.session.error is not None:
            self.status(snap)
            self._last_status = now
