"""The Unitree G1 adapter over its low-level DDS interface: rt/lowstate in, rt/lowcmd out (`unitree_hg` types).

The same code drives the real robot and Twin's simulated one (`twin sim SCENE --robot g1 --bridge unitree`):
only `interface` (and the DDS `domain`: 0 on the robot, 1 for simulators by unitree_mujoco's habit) changes.
`connect()` waits for the first LowState_, then a background thread publishes a LowCmd_ (with its CRC) every
1/`rate_hz` s from the latest target, so `send()` only swaps that target and never blocks. Each motor of the
policy's joints gets a PD command (q = target, dq = 0, kp, kd per joint, tau = 0); the G1's other motors hold the
position they had at `connect()` (`hold_others`, on the same gains) or, with it off, are sent mode 0 (no torque).

Safety on a real robot: a low-level rt/lowcmd stream takes the motors from Unitree's own controller, so the legs
of a standing robot are only as safe as what this sends them (hang the robot, or hold the legs as `hold_others`
does; Unitree's rt/arm_sdk topic, which blends arm commands into its locomotion controller, is not implemented
here). Unitree's robots and SDKs run the 0.10 line of Cyclone DDS, which does not talk to the 11 line Twin
installs (discovery meets, the type objects do not: nothing is exchanged, and a 0.10.2 process was seen to crash
on them): to reach a robot, install cyclonedds 0.10.2 instead (see the README); this code runs unchanged on both
lines (checked here against a peer declaring Unitree's types on 0.10.2). Not tested on a G1: none was at hand.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np

from policies.runtime.robot import RobotState
from policies.runtime.safety import robot_limits
from sim import (
    G1_JOINTS,
    LOWCMD_STRUCT,
    TOPIC_LOWCMD,
    TOPIC_LOWSTATE,
    DdsLink,
    LowCmd_,
    LowState_,
    from_struct,
    g1_joint_name,
    g1_motor,
    struct_crc,
    to_struct,
)
from twin_kit import InputError

# PD gains per joint kind (stiffness N m/rad, damping N m s/rad), in the range Unitree's G1 low-level examples use.
GAINS = {"hip": (100.0, 2.0), "knee": (150.0, 4.0), "ankle": (40.0, 2.0), "waist": (200.0, 5.0),
         "shoulder": (60.0, 1.5), "elbow": (60.0, 1.5), "wrist_roll": (40.0, 1.0), "wrist_pitch": (20.0, 0.5),
         "wrist_yaw": (20.0, 0.5)}


def default_gains(joint: str) -> tuple[float, float]:
    """Twin's default (kp, kd) for a G1 joint (URDF name)."""
    for kind in sorted(GAINS, key=len, reverse=True):   # wrist_roll before a bare "roll" could match
        if kind in joint:
            return GAINS[kind]
    raise InputError(f"no default gains for G1 joint {joint!r}")


class G1Adapter:
    """A `RobotAdapter` for a G1 on `interface` / `domain`, in the policy's joint order `joint_names` (Twin's URDF
    names, `right_elbow_joint`, or Unitree's, `kRightElbow`). `kp`, `kd`: one value per joint (default: `GAINS`)."""

    name = "g1"

    def __init__(self, joint_names, interface: str = "lo", domain: int = 1, rate_hz: float = 500.0,
                 kp=None, kd=None, *, hold_others: bool = True, timeout: float = 10.0):
        self.joint_names = list(joint_names)
        if not self.joint_names or len(set(self.joint_names)) != len(self.joint_names):
            raise InputError(f"g1 joints must be distinct G1 joint names; got {self.joint_names}")
        urdf = [g1_joint_name(n) for n in self.joint_names]
        if len(set(urdf)) != len(urdf):
            raise InputError(f"g1 joints name one joint twice (in two spellings): {self.joint_names}")
        if not rate_hz > 0 or not timeout > 0:
            raise InputError("rate_hz and timeout must be positive")
        self.interface, self.domain, self.rate_hz, self.timeout = interface, int(domain), float(rate_hz), timeout
        self.motors = np.array([g1_motor(n) for n in urdf])
        gains = np.array([default_gains(n) for n in G1_JOINTS])      # all 29 motors, for hold_others
        self.kp_all, self.kd_all = gains[:, 0].copy(), gains[:, 1].copy()
        for name, values, column in (("kp", kp, self.kp_all), ("kd", kd, self.kd_all)):
            if values is not None:
                v = np.broadcast_to(np.asarray(values, dtype=np.float64), (len(urdf),))
                if not (np.isfinite(v).all() and (v >= 0).all()):
                    raise InputError(f"{name} must be finite and >= 0, got {values}")
                column[self.motors] = v
        self.hold_others = hold_others
        self.limits = replace(robot_limits("g1").select(urdf), names=tuple(self.joint_names))
        self._link = self._writer = self._reader = None
        self.writer_guid: str | None = None
        self._state = None                    # (receive time, C-layout LowState_ record)
        self._first = threading.Event()
        self._target: np.ndarray | None = None
        self._base: np.ndarray | None = None   # LowCmd_ record: every motor's hold command, targets go on top
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.counts = {"states": 0, "bad_crc": 0, "commands": 0, "rejected_targets": 0}
        self._state_times: list[float] = []

    # ------------------------------------------------------------------ link

    def connect(self) -> None:
        """Join the DDS domain, wait for the robot's first LowState_, then start streaming hold commands."""
        self._link = DdsLink(self.interface, self.domain)
        self._writer = self._link.writer(TOPIC_LOWCMD, LowCmd_)
        self.writer_guid = str(self._writer.guid)   # how the robot's side names this stream (DDS GUID)
        self._reader = self._link.reader(TOPIC_LOWSTATE, LowState_, self._on_state)
        if not self._first.wait(self.timeout):
            self.close()
            raise InputError(f"no {TOPIC_LOWSTATE} on interface {self.interface}, DDS domain {self.domain} "
                             f"within {self.timeout:g} s: is the robot (or `twin sim --robot g1 --bridge unitree`) "
                             f"running there?")
        _, rec = self._state
        q_all = rec["motor_state"]["q"].astype(np.float64)
        base = np.zeros((), dtype=LOWCMD_STRUCT)
        base["mode_machine"] = rec["mode_machine"]
        m = base["motor_cmd"]
        n = len(G1_JOINTS)
        if self.hold_others:
            m["mode"][:n], m["q"][:n] = 1, q_all[:n]
            m["kp"][:n], m["kd"][:n] = self.kp_all, self.kd_all
        m["mode"][self.motors] = 1
        m["kp"][self.motors], m["kd"][self.motors] = self.kp_all[self.motors], self.kd_all[self.motors]
        self._base = base
        self._target = q_all[self.motors].copy()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._publish_loop, name="g1-lowcmd", daemon=True)
        self._thread.start()

    def _on_state(self, msg) -> None:
        """Cyclone's receive thread: keep the newest LowState_ whose CRC holds."""
        rec = to_struct(msg)
        if struct_crc(rec) != msg.crc:
            self.counts["bad_crc"] += 1
            return
        now = time.monotonic()
        self._state = (now, rec)
        self.counts["states"] += 1
        times = self._state_times
        times.append(now)
        if len(times) > 4096:
            del times[:2048]
        self._first.set()

    def _command(self, target: np.ndarray) -> object:
        """The LowCmd_ (CRC set) that sends `target` to the policy's joints and the hold commands to the rest."""
        rec = self._base.copy()
        rec["motor_cmd"]["q"][self.motors] = target
        rec["crc"] = struct_crc(rec)
        return from_struct(rec)

    def _publish_loop(self) -> None:
        period = 1.0 / self.rate_hz
        next_t = time.monotonic()
        while not self._stopping.is_set():
            self._writer.write(self._command(self._target))
            self.counts["commands"] += 1
            next_t += period
            wait = next_t - time.monotonic()
            if wait < -period:            # fell behind (a busy process): restart the schedule, do not burst
                next_t, wait = time.monotonic(), 0.0
            if wait > 0:
                self._stopping.wait(wait)

    # ------------------------------------------------------------------ RobotAdapter

    def read(self) -> RobotState:
        """The newest state of the policy's joints: q, dq, the motors' estimated torque, its arrival time."""
        if self._state is None:
            raise InputError("g1: read() before connect()")
        t, rec = self._state
        ms = rec["motor_state"][self.motors]
        return RobotState(time=t, q=ms["q"].astype(np.float64), qd=ms["dq"].astype(np.float64),
                          tau=ms["tau_est"].astype(np.float64))

    def send(self, q_target) -> None:
        """Make `q_target` (the policy's joints, rad) the target the link streams; non-finite targets are refused
        (counted) and the previous target kept. Never blocks."""
        q = np.array(q_target, dtype=np.float64).reshape(-1)
        if q.shape != (len(self.motors),):
            raise InputError(f"g1: a target has {q.size} joints, the adapter {len(self.motors)}")
        if self._base is None:
            raise InputError("g1: send() before connect()")
        if not np.isfinite(q).all():
            self.counts["rejected_targets"] += 1
            return
        self._target = q

    def stop(self, zero_torque: bool = False) -> None:
        """Hold the joints where they are now (position hold, with the drives' damping). With `zero_torque`, then
        switch the policy's motors off (kp = kd = 0, mode 0): the arm goes limp, only do this when it is supported."""
        if self._base is None:
            return
        self._target = self.read().q
        if zero_torque:
            base = self._base.copy()
            m = base["motor_cmd"]
            m["mode"][self.motors], m["kp"][self.motors], m["kd"][self.motors] = 0, 0.0, 0.0
            self._base = base

    def close(self) -> None:
        """Stop streaming (the robot keeps the last command, as Unitree's motors do) and leave the domain."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        self._writer = self._reader = None
        if self._link is not None:
            self._link.close()
            self._link = None

    # ------------------------------------------------------------------ measurements

    def state_rate(self, window: float = 1.0) -> float:
        """LowState_ messages per second over the last `window` seconds."""
        times = list(self._state_times)
        now = time.monotonic()
        return sum(1 for t in times if now - t <= window) / window

    def motor_state(self) -> np.ndarray:
        """The newest LowState_ as its C-layout record (all 35 motors, IMU, tick)."""
        return self._state[1]
