"""The watchdog: run -> hold -> stop from the age of the last fresh action (an injected clock, and the real
monotonic clock at T1 = 20 ms, T2 = 60 ms), the stop latching until reset, and the controlled stop decelerating
within the Franka's and the G1's acceleration limits to zero velocity."""
from __future__ import annotations

import time

import numpy as np
import pytest

from policies.runtime.safety import robot_limits
from policies.runtime.watchdog import HOLD, RUN, STOP, Watchdog, stop_trajectory
from twin_kit import InputError


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_run_hold_stop_on_an_injected_clock():
    clock = Clock()
    dog = Watchdog(hold_after_ms=20, stop_after_ms=60, clock=clock)
    assert dog.state() == RUN
    clock.t += 0.019
    assert dog.state() == RUN
    dog.fresh()
    clock.t += 0.019
    assert dog.state() == RUN and dog.age_ms() == pytest.approx(19.0)
    clock.t += 0.002
    assert dog.state() == HOLD            # 21 ms without a fresh action
    clock.t += 0.038
    assert dog.state() == HOLD            # 59 ms
    clock.t += 0.001
    assert dog.state() == STOP and dog.stopped_at == clock.t   # 60 ms
    dog.fresh()                           # the policy coming back does not resume a stopped robot
    clock.t += 0.001
    assert dog.state() == STOP
    dog.reset()
    assert dog.state() == RUN and dog.stopped_at is None
    dog.trip()
    assert dog.state() == STOP
    assert dog.state(now=clock.t - 1.0) == STOP  # latched whatever time is asked about


def test_explicit_times_and_bad_settings():
    dog = Watchdog(hold_after_ms=100, stop_after_ms=300, clock=lambda: 0.0)
    dog.fresh(now=5.0)
    assert dog.state(now=5.05) == RUN and dog.state(now=5.2) == HOLD and dog.state(now=5.31) == STOP
    with pytest.raises(InputError, match="hold_after_ms"):
        Watchdog(hold_after_ms=50, stop_after_ms=20)
    with pytest.raises(InputError, match="hold_after_ms"):
        Watchdog(hold_after_ms=0, stop_after_ms=20)


@pytest.mark.realtime  # 10 ms periods on the real clock: a busy machine can skip the 40 ms hold window
def test_run_hold_stop_on_the_real_monotonic_clock():
    """A 100 Hz loop on absolute deadlines gets fresh actions for 100 ms, then none: it holds after T1 and stops
    within two control periods after T2."""
    period, t1, t2 = 0.010, 20.0, 60.0
    dog = Watchdog(hold_after_ms=t1, stop_after_ms=t2)
    start = time.monotonic()
    deadline, last_fresh, seen = start, None, []
    while True:
        now = time.monotonic()
        if now - start < 0.100:
            dog.fresh(now)
            last_fresh = now
        state = dog.state(now)
        seen.append((now, state))
        if state == STOP:
            break
        assert now - start < 2.0, "no stop within 2 s"
        deadline += period
        time.sleep(max(0.0, deadline - time.monotonic()))
    hold_at = next(t for t, s in seen if s == HOLD)
    assert [s for _, s in seen] == sorted((s for _, s in seen), key=[RUN, HOLD, STOP].index)  # run, hold, stop
    assert t1 <= (hold_at - last_fresh) * 1e3 and t2 <= (dog.stopped_at - last_fresh) * 1e3
    assert (dog.stopped_at - last_fresh) * 1e3 <= t2 + 2 * period * 1e3, (dog.stopped_at - last_fresh)


@pytest.mark.parametrize("robot", ["franka", "g1"])
def test_the_controlled_stop_decelerates_within_the_limits_to_rest(robot):
    limits = robot_limits(robot)
    rng = np.random.default_rng(1)
    q = 0.5 * (np.clip(limits.lower, -3, 3) + np.clip(limits.upper, -3, 3))
    qd = rng.uniform(-1.0, 1.0, limits.dof) * np.minimum(limits.velocity, 3.0)
    accel = limits.acceleration if robot == "franka" else 10.0  # the G1 publishes none: a chosen one
    dt = 0.005
    path = stop_trajectory(q, qd, dt, accel, duration=0.1)
    x = np.concatenate([q[None], path])
    v = np.concatenate([qd[None], np.diff(x, axis=0) / dt])
    a = np.diff(v, axis=0) / dt
    amax = np.broadcast_to(accel, q.shape)
    fin = np.isfinite(amax)
    assert (np.abs(a)[:, fin] <= amax[fin] * (1 + 1e-9)).all()
    ramp = max(0.1, float(np.max(np.abs(qd)[fin] / amax[fin])))
    assert len(path) == int(np.ceil(ramp / dt - 1e-9)) + 1
    assert np.array_equal(v[-1], np.zeros(limits.dof))            # ends at rest
    assert (np.abs(v[1:]) <= np.abs(qd) + 1e-12).all() and (np.diff(np.abs(v), axis=0) <= 1e-12).all()
    assert np.allclose(path[-1], q + qd * ramp / 2)                 # the distance a linear ramp covers
    if robot == "franka":  # a fast joint needs longer than the asked 0.1 s to stop within its limit
        assert ramp > 0.1


def test_stop_trajectory_edge_cases():
    rest = stop_trajectory([0.1, 0.2], [0.0, 0.0], 0.01, 5.0, duration=0.05)
    assert np.allclose(rest, [[0.1, 0.2]] * 6)                        # at rest already: stay
    clipped = stop_trajectory([0.9], [2.0], 0.01, None, duration=0.5, upper=[1.0])
    assert clipped.max() == 1.0                                       # the position limit wins
    assert stop_trajectory([0.0], [1.0], 0.01, None, duration=0.0).shape == (2, 1)  # at least one step
    with pytest.raises(InputError, match="finite"):
        stop_trajectory([np.nan], [0.0], 0.01, 1.0)
    with pytest.raises(InputError, match="positive"):
        stop_trajectory([0.0], [1.0], 0.01, 0.0)
