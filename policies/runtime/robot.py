"""The one small interface every robot adapter meets (sim, franka, g1): connect, read its state, send joint
position targets, its limits and control rate, stop, close. The control loop (`twin deploy`) speaks only this.

An adapter's joint order is the policy's action order (the dataset's joint names); `limits` are in that order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from policies.runtime.safety import RobotLimits


@dataclass
class RobotState:
    """One reading: monotonic time (s), joint positions and velocities, measured torques when the robot has them,
    and camera frames (HxWx3 uint8, keyed by the dataset's short camera name) when the adapter renders them."""

    time: float
    q: np.ndarray
    qd: np.ndarray
    tau: np.ndarray | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)


class RobotAdapter(Protocol):
    """What the runtime needs of a robot. `send` is non-blocking (the adapter's own link keeps the robot's rate);
    `stop` brings the robot to rest and holds it (the watchdog's last resort); `close` releases the link."""

    name: str
    joint_names: list[str]
    limits: RobotLimits
    rate_hz: float  # the rate at which the robot accepts targets

    def connect(self) -> None: ...

    def read(self) -> RobotState: ...

    def send(self, q_target: np.ndarray) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...
