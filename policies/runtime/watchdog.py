"""The watchdog: a robot whose policy goes quiet holds still, then stops, and stays stopped until told otherwise.

`Watchdog` times the last fresh action on a monotonic clock (injectable, for tests): younger than
`hold_after_ms` -> run; younger than `stop_after_ms` -> hold the last safe target; older -> stop, latched until
`reset()`. A server that dies, a stalled network and a policy returning garbage (rejected by the safety layer,
so never `fresh()`) all end the same way. `stop_trajectory` is the controlled stop: joint targets that ramp the
velocity down to zero at or under the acceleration limits, all joints together so the path is kept.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from twin_kit import InputError

RUN, HOLD, STOP = "run", "hold", "stop"


@dataclass
class Watchdog:
    """run | hold | stop from the age of the last fresh action; `clock()` returns seconds (monotonic)."""

    hold_after_ms: float = 100.0
    stop_after_ms: float = 300.0
    clock: Callable[[], float] = time.monotonic
    stopped_at: float | None = field(default=None, init=False)  # clock time the stop latched
    _last: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self):
        if not 0 < self.hold_after_ms <= self.stop_after_ms:
            raise InputError(f"watchdog needs 0 < hold_after_ms ({self.hold_after_ms}) <= stop_after_ms "
                             f"({self.stop_after_ms})")
        self.reset()

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else float(now)

    def reset(self, now: float | None = None) -> None:
        """Clear a latched stop and restart the timer, as if an action had just arrived."""
        self.stopped_at = None
        self._last = self._now(now)

    def fresh(self, now: float | None = None) -> None:
        """A new valid action arrived (ignored once stopped: only `reset()` resumes)."""
        if self.stopped_at is None:
            self._last = self._now(now)

    def age_ms(self, now: float | None = None) -> float:
        """Milliseconds since the last fresh action."""
        return (self._now(now) - self._last) * 1e3

    def trip(self, now: float | None = None) -> None:
        """Stop now whatever the timer says (a robot fault, an operator)."""
        if self.stopped_at is None:
            self.stopped_at = self._now(now)

    def state(self, now: float | None = None) -> str:
        """RUN, HOLD or STOP at `now` (default: the clock); STOP latches."""
        if self.stopped_at is not None:
            return STOP
        now = self._now(now)
        age = (now - self._last) * 1e3
        if age >= self.stop_after_ms:
            self.stopped_at = now
            return STOP
        return HOLD if age >= self.hold_after_ms else RUN


def stop_trajectory(q, qd, dt: float, acceleration, duration: float = 0.5, lower=None,
                    upper=None) -> np.ndarray:
    """Joint position targets (n, D), one per control period `dt`, that bring joints at q moving at qd to rest.

    Every joint's velocity ramps linearly to zero over the same time T = max(duration, max |qd| / acceleration),
    so no joint decelerates faster than its limit (`acceleration`: scalar or (D,), inf or None = unlimited) and
    the joints keep their direction ratios (the path is kept). The last row repeats the rest position: the final
    commanded velocity is exactly zero. `lower`/`upper`, when given, clip the targets (the position limits win
    over the deceleration then).
    """
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    qd = np.nan_to_num(np.asarray(qd, dtype=np.float64).reshape(-1))
    if q.shape != qd.shape or not np.isfinite(q).all():
        raise InputError(f"stop trajectory needs finite positions and velocities of one size, got {q.shape}, "
                         f"{qd.shape}")
    if not dt > 0 or duration < 0:
        raise InputError(f"stop trajectory needs dt > 0 and duration >= 0, got {dt}, {duration}")
    a = np.broadcast_to(np.inf if acceleration is None else np.asarray(acceleration, dtype=np.float64), q.shape)
    if np.any(a <= 0):
        raise InputError("acceleration limits must be positive")
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(np.isfinite(a), np.abs(qd) / a, 0.0)
    ramp = max(duration, float(need.max(initial=0.0)), dt)
    n = math.ceil(ramp / dt - 1e-9)
    t = np.minimum(np.arange(1, n + 1) * dt, ramp)[:, None]
    out = q + qd * (t - t * t / (2 * ramp))     # x(t) of v(t) = qd (1 - t / T)
    out = np.concatenate([out, out[-1:]], axis=0)
    if lower is not None or upper is not None:
        out = np.clip(out, -np.inf if lower is None else lower, np.inf if upper is None else upper)
    return out
