"""The Franka Hand behind the Franka adapter: finger targets become gripper moves, run in a child process.

libfranka's gripper calls block until the fingers settle (a move takes up to a second or two), and pylibfranka
holds the GIL while they block, which would freeze the adapter's 1 kHz arm loop. So the gripper lives in its own
spawned process (`twin_kit.IsolatedWorker`, which also kills and replaces a child that hangs), driven by a thread
here that waits on the pipe with the GIL released. Closing goes through `grasp` (fingers that stop on an object
count as success and keep their force), opening through `move`. While a command runs the width is not re-read:
`reading()` is the last width read between commands.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from twin_kit import IsolatedWorker, one_line, warn

_GRIPPERS: dict = {}  # in the child: host -> pylibfranka.Gripper


def _gripper(host: str):
    """The child's connection to the gripper at `host` (made on first use)."""
    if host not in _GRIPPERS:
        import pylibfranka

        _GRIPPERS[host] = pylibfranka.Gripper(host)
    return _GRIPPERS[host]


def _grip_read(host: str) -> tuple[float, float]:
    """(width, max_width) in metres, read once."""
    s = _gripper(host).read_once()
    return float(s.width), float(s.max_width)


def _grip_command(host: str, width: float, speed: float, force: float, closing: bool) -> bool:
    """Close to `width` with `force` (an object on the way stops the fingers: still a success) or open to it."""
    g = _gripper(host)
    if closing:
        return bool(g.grasp(width, speed, force, 0.005, 0.1))
    return bool(g.move(width, speed))


@dataclass
class GripperConfig:
    """How finger targets are turned into gripper commands."""

    speed: float = 0.05       # m/s the width changes at (the Franka Hand's maximum is about this)
    force: float = 20.0       # N the fingers hold an object with after closing on it
    tolerance: float = 0.002  # m: a target width closer than this to the last command sends nothing new
    read_period: float = 0.01  # s between width readings while no command runs
    timeout: float = 30.0     # s a command or a reading (or the child's start) may take before the child is replaced


class GripperLink:
    """A thread that sends the latest target width to the gripper process and reads the width back."""

    def __init__(self, host: str, config: GripperConfig):
        self.host, self.config = host, config
        self.error: str | None = None
        self._worker = IsolatedWorker("franka-gripper")
        self._lock = threading.Lock()
        self._target: float | None = None
        self._reading: tuple[float, float, float] | None = None  # width, width rate, monotonic time
        self.max_width = 0.08
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float) -> None:
        """Start the process and the thread; returns after the first width reading (raises on failure)."""
        width, self.max_width = self._worker.call(_grip_read, (self.host,), timeout=timeout, attempts=1)
        self._reading = (width, 0.0, time.monotonic())
        self._thread = threading.Thread(target=self._run, name="franka-gripper", daemon=True)
        self._thread.start()

    def set_width(self, width: float) -> None:
        """Non-blocking: the width to head for next (clipped into [0, max_width])."""
        with self._lock:
            self._target = min(max(float(width), 0.0), self.max_width)

    def target(self) -> float:
        """The width last asked for (the reading until a target is set)."""
        with self._lock:
            return self._reading[0] if self._target is None else self._target

    def reading(self) -> tuple[float, float, float]:
        """(width m, width rate m/s, monotonic time of the reading)."""
        with self._lock:
            return self._reading

    def _run(self) -> None:
        cfg, sent = self.config, None
        while not self._closing.is_set():
            with self._lock:
                want = self._target
                width = self._reading[0]
            try:
                if want is not None and (sent is None or abs(want - sent) > cfg.tolerance):
                    closing = want < width - cfg.tolerance
                    ok = self._worker.call(_grip_command, (self.host, want, cfg.speed, cfg.force, closing),
                                           timeout=cfg.timeout, attempts=1)
                    sent = want
                    if not ok:
                        self._note(f"the gripper did not reach {want * 1e3:.1f} mm")
                w, _ = self._worker.call(_grip_read, (self.host,), timeout=cfg.timeout, attempts=1)
            except Exception as e:  # noqa: BLE001 - a failed command (or a hung child) must not end the link
                self._note(one_line(e))
                sent = None
                self._closing.wait(cfg.read_period)
                continue
            now = time.monotonic()
            with self._lock:
                w0, _, t0 = self._reading
                self._reading = (w, (w - w0) / (now - t0) if now > t0 else 0.0, now)
            self._closing.wait(cfg.read_period)

    def _note(self, message: str) -> None:
        if message != self.error:
            warn(f"franka gripper: {message}")
        self.error = message

    def close(self, timeout: float = 5.0) -> None:
        """End the thread (a command still running is cut off with its process)."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._worker.close()
