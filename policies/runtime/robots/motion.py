"""Jerk-limited joint motion toward a stream of targets, one tick at a time: the fast side of a robot link.

A policy sends joint targets at tens of Hz; an arm like the Franka wants a position every millisecond whose
velocity, acceleration and jerk stay within its limits (libfranka stops the robot on a discontinuity).
`JointMotion` keeps a reference path, a straight segment from where the reference is to each new target timed
by the send period, or a velocity ramp to rest on `stop()` (all joints together, so the path is kept), and a
commanded state (q, v, a) that follows it with a critically damped loop (velocity feed-forward + position
feedback) whose velocity, acceleration and jerk are clipped every tick and which brakes in time for the
segment's end and for the position limits. Pure NumPy; one caller thread.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from twin_kit import InputError


@dataclass(frozen=True, eq=False)
class MotionLimits:
    """Per-joint limits the commanded motion keeps (rad, rad/s, rad/s^2, rad/s^3)."""

    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    jerk: np.ndarray

    def __post_init__(self):
        n = np.asarray(self.lower).size
        for k in ("lower", "upper", "velocity", "acceleration", "jerk"):
            v = np.asarray(getattr(self, k), dtype=np.float64).reshape(-1)
            if v.shape != (n,):
                raise InputError(f"motion limits: {k} has {v.size} values for {n} joints")
            object.__setattr__(self, k, v)
        for k in ("velocity", "acceleration", "jerk"):
            v = getattr(self, k)
            if not (np.all(v > 0) and np.all(np.isfinite(v))):
                raise InputError(f"motion limits: every {k} limit must be positive and finite")
        if np.any(self.lower > self.upper):
            raise InputError("motion limits: a lower position limit is above its upper limit")

    def scaled(self, scale: float) -> MotionLimits:
        """These limits with velocity, acceleration and jerk times `scale` (stay under the robot's own check)."""
        if not 0 < scale <= 1:
            raise InputError(f"limit scale must be in (0, 1], got {scale}")
        return replace(self, velocity=self.velocity * scale, acceleration=self.acceleration * scale,
                       jerk=self.jerk * scale)


def braking_speed(distance, accel, lag) -> np.ndarray:
    """Fastest speed from which the motion still stops within `distance` when it keeps going for `lag` seconds
    (a tick, the time the deceleration needs to build up, the loop's delay) and then brakes at `accel`:
    v lag + v^2 / 2a = d."""
    d = np.maximum(np.asarray(distance, dtype=np.float64), 0.0)
    return accel * (np.sqrt(lag * lag + 2 * d / accel) - lag)


class JointMotion:
    """The commanded joint motion: `target(q, period)` or `stop()` change the reference, `step(dt)` advances one
    tick and returns the position to command. `bandwidth` (1/s) is the tracking loop's natural frequency."""

    def __init__(self, limits: MotionLimits, q0, bandwidth: float = 25.0, max_period: float = 0.1):
        q0 = np.array(q0, dtype=np.float64).reshape(-1)
        if q0.shape != limits.lower.shape or not np.isfinite(q0).all():
            raise InputError(f"motion start needs {limits.lower.size} finite joint positions, got {q0.shape}")
        if not bandwidth > 0 or not max_period > 0:
            raise InputError("motion bandwidth and max_period must be positive")
        self.limits = limits
        self.kp, self.kv = bandwidth, 4.0 * bandwidth  # s^2 + kv s + kv kp: a double root (critically damped)
        self.max_period = max_period
        self.q, self.v, self.a = q0.copy(), np.zeros_like(q0), np.zeros_like(q0)
        self.stopping = False
        self._segment(q0, np.zeros_like(q0), np.zeros_like(q0), 0.0)

    def _segment(self, p0, v0, a0, duration: float) -> None:
        """Reference r(t) = p0 + v0 t + a0 t^2 / 2 for t in [0, duration], then at rest at its end."""
        self.p0, self.v0, self.a0, self.duration, self.t = p0, v0, a0, duration, 0.0
        self.end = p0 + v0 * duration + 0.5 * a0 * duration * duration

    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """(position, velocity) of the reference now."""
        t = self.t
        if t >= self.duration:
            return self.end.copy(), np.zeros_like(self.end)
        return self.p0 + self.v0 * t + 0.5 * self.a0 * t * t, self.v0 + self.a0 * t

    def target(self, q, period: float) -> None:
        """Head for joint positions q (clipped into the position limits) along a straight segment from where the
        reference is, over `period` seconds (the time until the next target is due; at most max_period)."""
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape != self.q.shape or not np.isfinite(q).all():
            raise InputError(f"motion target needs {self.q.size} finite joint positions, got {q.shape}")
        q = np.clip(q, self.limits.lower, self.limits.upper)
        period = float(np.clip(period, 1e-3, self.max_period))
        r, _ = self.reference()
        self.stopping = False
        self._segment(r, (q - r) / period, np.zeros_like(r), period)

    def stop(self, min_duration: float = 0.05) -> None:
        """Ramp the velocity to zero along the current path, all joints over the same time (no joint decelerating
        faster than half its acceleration limit), then hold where that ends."""
        if self.stopping:
            return
        v = self.v.copy()  # half the acceleration limit, as when braking: the loop needs headroom to follow
        ramp = max(min_duration, float(np.max(np.abs(v) / (0.5 * self.limits.acceleration))))
        self.stopping = True
        self._segment(self.q.copy(), v, -v / ramp, ramp)

    @property
    def at_rest(self) -> bool:
        """The reference is at its end and the commanded motion has (numerically) stopped there."""
        return (self.t >= self.duration and float(np.max(np.abs(self.v))) < 1e-4
                and float(np.max(np.abs(self.a))) < 1e-2 and float(np.max(np.abs(self.end - self.q))) < 1e-4)

    def step(self, dt: float) -> np.ndarray:
        """Advance one tick of `dt` seconds; the commanded joint positions."""
        lim = self.limits
        self.t = min(self.t + dt, self.duration)
        r, vr = self.reference()
        # feedback on the reference error, linear near it and no faster than can brake to it (a sqrt controller),
        # at half the acceleration limit (the rest is the loop's headroom); the same braking for the position limits
        brake, lag = 0.5 * lim.acceleration, dt + lim.acceleration / lim.jerk + 1.0 / self.kv
        e = r - self.q
        fb = np.sign(e) * np.minimum(self.kp * np.abs(e), braking_speed(np.abs(e), brake, lag))
        v_des = np.clip(vr + fb, -lim.velocity, lim.velocity)
        v_des = np.minimum(v_des, braking_speed(lim.upper - self.q, brake, lag))
        v_des = np.maximum(v_des, -braking_speed(self.q - lim.lower, brake, lag))
        a_des = np.clip(self.kv * (v_des - self.v), -lim.acceleration, lim.acceleration)
        self.a = np.clip(a_des, self.a - lim.jerk * dt, self.a + lim.jerk * dt)
        self.v = self.v + self.a * dt
        self.q = self.q + self.v * dt
        return self.q.copy()
