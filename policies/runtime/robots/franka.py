"""The Franka Panda / FR3 adapter over libfranka's official Python bindings (`pylibfranka`).

The FCI wants a joint position every millisecond and stops the robot on a discontinuity, while a policy sends
targets at tens of Hz. So `connect()` starts libfranka's joint position control (joint impedance) in a background
thread that answers each of the robot's state packets with the next position of a `JointMotion`: a jerk-limited
path toward the latest `send()` target, within the Panda's velocity, acceleration and jerk limits (scaled by
`limit_scale`). `read()` returns the last state the loop received (q, dq, tau_J, the monotonic time it arrived).
`stop()` ramps the velocity down along the path and holds; `close()` does the same, then ends the motion and the
loop. The two finger joints, when the policy's joints include them, drive the Franka Hand through libfranka's
gripper API in a child process (`franka_gripper`). pylibfranka is imported only by `connect()`; never import
franky in the same process (both bundle their own libfranka).

Python and the robot share the GIL: pylibfranka releases it while it waits for a packet, but a busy Python
thread can keep the loop from getting it back for the interpreter's switch interval (5 ms by default, five missed
packets). `connect()` lowers the switch interval to `switch_interval` for the process while the link is open;
`stats()` reports the loop's measured rate and its longest gap.
"""
from __future__ import annotations

import math
import sys
import threading
import time

import numpy as np

from policies.runtime.robot import RobotState
from policies.runtime.robots.franka_gripper import GripperConfig, GripperLink
from policies.runtime.robots.motion import JointMotion, MotionLimits
from policies.runtime.safety import robot_limits
from twin_kit import InputError, one_line

ARM = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGERS = ("panda_finger_joint1", "panda_finger_joint2")
# Franka's datasheet (and libfranka's rate_limiting.h): jerk limits 3750..10000 rad/s^3, 500 x each acceleration
# limit; Twin's URDF and joint_limits.json give velocity and acceleration.
JERK_PER_ACCELERATION = 500.0


class FrankaError(RuntimeError):
    """The robot or its link failed (unreachable, a reflex, a lost connection): libfranka's message, one line."""


class FrankaAdapter:
    """A `RobotAdapter` for one Franka arm (and hand) at `host`, in the policy's joint order `joint_names`.

    Arm joints the policy does not name are held where they were at `connect()`. `realtime=True` keeps
    libfranka's check for a real-time kernel (leave it off without one: the loop then runs best-effort).
    """

    name = "franka"

    def __init__(self, host: str = "127.0.0.1", joint_names=ARM + FINGERS, rate_hz: float = 1000.0, *,
                 limit_scale: float = 0.9, bandwidth: float = 25.0, realtime: bool = False,
                 gripper: GripperConfig | None = None, switch_interval: float | None = 2e-4,
                 timeout: float = 30.0):
        self.host = host
        self.joint_names = list(joint_names)
        unknown = [n for n in self.joint_names if n not in ARM + FINGERS]
        if unknown or len(set(self.joint_names)) != len(self.joint_names) or not self.joint_names:
            raise InputError(f"franka joints must be distinct names among {', '.join(ARM + FINGERS)}; got "
                             f"{', '.join(unknown) or self.joint_names}")
        fingers = [n for n in self.joint_names if n in FINGERS]
        if len(fingers) == 1:
            raise InputError("name both finger joints or neither: the hand moves them together")
        if not rate_hz > 0 or not timeout > 0:
            raise InputError("rate_hz and timeout must be positive")
        self.rate_hz, self.timeout = float(rate_hz), float(timeout)
        self.realtime, self.switch_interval = realtime, switch_interval
        full = robot_limits("franka")
        self.limits = full.select(self.joint_names)
        arm = full.select(ARM)
        self.motion_limits = MotionLimits(arm.lower, arm.upper, arm.velocity, arm.acceleration,
                                          JERK_PER_ACCELERATION * arm.acceleration).scaled(limit_scale)
        self.bandwidth = bandwidth
        self._arm_index = [(i, ARM.index(n)) for i, n in enumerate(self.joint_names) if n in ARM]
        self._finger_index = [i for i, n in enumerate(self.joint_names) if n in FINGERS]
        self._gripper_config = gripper or GripperConfig()
        self._gripper: GripperLink | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        self._arm_target: np.ndarray | None = None  # the 7 arm joints the loop heads for (pending pick-up)
        self._hold: np.ndarray | None = None        # arm joints the policy does not name stay here
        self._stop = self._close = False
        self._state = None                           # (q, dq, tau, monotonic time) of the last packet
        self._commanded = None                       # its q_d: the arm position the robot was last commanded
        self._at_rest = True
        self._error: str | None = None
        self._ready = threading.Event()
        self._done = threading.Event()
        self._ticks, self._t0, self._max_gap, self._robot_time = 0, 0.0, 0.0, 0.0
        self._work, self._max_work = 0.0, 0.0          # time from a packet's arrival to the command sent back
        self._previous_interval: float | None = None

    # -- RobotAdapter ------------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Reach the robot, start the 1 kHz joint position loop (and the gripper link); returns once the loop
        has the robot's state. Raises FrankaError if the robot is unreachable or reports errors."""
        if self._thread is not None:
            return
        try:
            import pylibfranka as plf
        except ImportError:
            raise InputError("the franka adapter needs libfranka's Python bindings: pip install pylibfranka") from None
        self._reset()
        rt = plf.RealtimeConfig.kEnforce if self.realtime else plf.RealtimeConfig.kIgnore
        try:
            robot = plf.Robot(self.host, rt)
            state = robot.read_once()
        except Exception as e:  # noqa: BLE001 - libfranka's network, realtime and protocol errors
            raise FrankaError(f"cannot connect to the Franka at {self.host}: {one_line(e)}") from None
        if state.current_errors:
            raise FrankaError(f"the Franka at {self.host} reports errors ({state.current_errors}): clear them in "
                              "Desk (or with automatic error recovery) first")
        if self.switch_interval is not None and sys.getswitchinterval() > self.switch_interval:
            self._previous_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.switch_interval)
        self._thread = threading.Thread(target=self._run, args=(plf, robot), name="franka-1khz", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.timeout) or self._error:
            error = self._error or f"no state from the Franka within {self.timeout:.0f} s"
            self.close()
            raise FrankaError(error)
        if self._finger_index:
            self._gripper = GripperLink(self.host, self._gripper_config)
            try:
                self._gripper.start(self.timeout)
            except Exception as e:  # noqa: BLE001 - the child's connection error, or its start timing out
                self.close()
                raise FrankaError(f"cannot connect to the Franka Hand at {self.host}: {one_line(e)}") from None

    def read(self) -> RobotState:
        """The last state the loop received, in `joint_names` order (finger tau: NaN, not measured)."""
        self._check()
        with self._lock:
            q7, dq7, tau7, t = self._state
        n = len(self.joint_names)
        q, qd, tau = np.zeros(n), np.zeros(n), np.full(n, np.nan)
        for i, k in self._arm_index:
            q[i], qd[i], tau[i] = q7[k], dq7[k], tau7[k]
        if self._gripper is not None:
            width, rate, _ = self._gripper.reading()
            q[self._finger_index], qd[self._finger_index] = width / 2, rate / 2
        return RobotState(time=t, q=q, qd=qd, tau=tau)

    def commanded(self) -> np.ndarray:
        """The joint positions last commanded, in `joint_names` order: the arm's q_d as the robot reports it (the
        jerk-limited path, before the robot's own tracking), the fingers' last target width / 2."""
        self._check()
        with self._lock:
            q_d = self._commanded.copy()
        out = np.zeros(len(self.joint_names))
        for i, k in self._arm_index:
            out[i] = q_d[k]
        if self._gripper is not None:
            out[self._finger_index] = self._gripper.target() / 2
        return out

    def send(self, q_target) -> None:
        """Non-blocking: the joint positions (in `joint_names` order) to head for; a later target replaces it.
        After `stop()`, a new target resumes motion."""
        self._check()
        x = np.asarray(q_target, dtype=np.float64).reshape(-1)
        if x.shape != (len(self.joint_names),) or not np.isfinite(x).all():
            raise InputError(f"franka target needs {len(self.joint_names)} finite joint positions, got {x.shape}")
        with self._lock:
            arm = self._hold.copy()
            for i, k in self._arm_index:
                arm[k] = x[i]
            self._arm_target, self._stop, self._at_rest = arm, False, False
        if self._gripper is not None:
            self._gripper.set_width(float(x[self._finger_index].sum()))

    def stop(self, timeout: float = 5.0, settle: float = 1e-3, window: float = 0.05) -> None:
        """Ramp the arm's commanded velocity to zero along its path and hold there; returns once the command is at
        rest and the measured joints have stayed within `settle` rad for `window` s (or after `timeout` s). The
        hand keeps its width. (A position test, not a speed one: a simulator's joint may chatter in place.)"""
        self._check()
        with self._lock:
            self._arm_target, self._stop = None, True
        deadline, since, anchor = time.monotonic() + timeout, None, None
        while time.monotonic() < deadline and not self._done.is_set():
            with self._lock:
                resting, q = self._at_rest and not self._stop, self._state[0]
            now = time.monotonic()
            if not resting or anchor is None or np.abs(q - anchor).max() > settle:
                since, anchor = now, q
            elif now - since >= window:
                return
            time.sleep(0.005)
        self._check()

    def close(self) -> None:
        """Bring the arm to rest, end libfranka's motion and the loop, close the gripper link. Idempotent."""
        if self._thread is not None:
            with self._lock:
                self._arm_target, self._close = None, True
            self._thread.join(self.timeout)
            self._thread = None
        if self._gripper is not None:
            self._gripper.close()
            self._gripper = None
        if self._previous_interval is not None:
            sys.setswitchinterval(self._previous_interval)
            self._previous_interval = None

    # -- the loop ------------------------------------------------------------------------------------------------

    def stats(self) -> dict:
        """The loop's packets so far, its measured rate (Hz, wall clock), the robot time they spanned (s), the
        longest gap between packets (ms), and the mean and longest time from a packet to its answer (ms)."""
        with self._lock:
            wall = time.monotonic() - self._t0 if self._ticks else 0.0
            return {"ticks": self._ticks, "rate_hz": self._ticks / wall if wall > 0 else 0.0,
                    "robot_time_s": self._robot_time, "max_gap_ms": self._max_gap * 1e3,
                    "mean_work_ms": self._work / max(self._ticks, 1) * 1e3, "max_work_ms": self._max_work * 1e3}

    def _check(self) -> None:
        if self._error:
            raise FrankaError(self._error)
        if self._thread is None:
            raise FrankaError("the franka adapter is not connected: call connect() first")

    def _publish(self, state, now: float) -> None:
        with self._lock:
            if self._ticks:
                self._max_gap = max(self._max_gap, now - self._state[3])
            else:
                self._t0 = now
            self._ticks += 1
            self._state = (np.array(state.q), np.array(state.dq), np.array(state.tau_J), now)
            self._commanded = np.array(state.q_d)

    def _run(self, plf, robot) -> None:
        """The 1 kHz loop: read a packet, pick up the latest target or stop, answer with the next position."""
        period = 1.0 / self.rate_hz
        try:
            ctrl = robot.start_joint_position_control(plf.ControllerMode.JointImpedance)
            state, elapsed = ctrl.readOnce()
            q_d = np.array(state.q_d)
            motion = JointMotion(self.motion_limits, q_d if np.any(q_d) else np.array(state.q), self.bandwidth)
            with self._lock:
                self._hold = motion.q.copy()
            self._publish(state, time.monotonic())
            self._ready.set()
            last_target, send_period = -math.inf, motion.max_period
            while True:
                dt = elapsed.to_sec() or period
                self._robot_time += dt
                with self._lock:
                    target, self._arm_target = self._arm_target, None
                    stop, closing = self._stop, self._close
                if target is not None:  # each segment lasts the policy's send period (smoothed: sends jitter)
                    interval = min(self._robot_time - last_target, motion.max_period)
                    send_period += 0.3 * (interval - send_period)
                    motion.target(target, send_period)
                    last_target = self._robot_time
                elif stop or closing:
                    motion.stop()
                cmd = plf.JointPositions(motion.step(dt).tolist())
                rest = motion.at_rest
                cmd.motion_finished = bool(closing and rest)
                ctrl.writeOnce(cmd)
                work = time.monotonic() - self._state[3]
                with self._lock:
                    self._work, self._max_work = self._work + work, max(self._max_work, work)
                    self._at_rest = rest
                    if stop and rest:
                        self._stop = False
                if cmd.motion_finished:
                    break
                state, elapsed = ctrl.readOnce()
                self._publish(state, time.monotonic())
        except Exception as e:  # noqa: BLE001 - a reflex, a lost link: the robot has stopped itself; say why
            self._error = f"franka control loop ended: {one_line(e)}"
        finally:
            self._ready.set()
            self._done.set()
