"""Moving parts of the dynamic synthetic scene: rigid motions of table objects over the capture.

A part is rigid; its pose at normalised time s in [0, 1] (0 = first frame, 1 = last) maps its rest-pose
vertices to the world: x_world = R x_rest + t. Each motion eases in and out over its own time window, so
positions and velocities are continuous and the part is still before and after it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("slide", "spin", "hinge")


@dataclass(frozen=True)
class MovingPart:
    """One rigid part's motion: a slide along `axis`, or a rotation about the line (pivot, axis)."""

    name: str
    kind: str  # one of KINDS; spin and hinge both rotate, they differ in where the axis sits (centre / edge)
    axis: tuple[float, float, float]  # unit direction: of travel (slide) or of the rotation axis
    amount: float  # metres (slide) or degrees (spin, hinge) at the end of the window
    window: tuple[float, float] = (0.0, 1.0)  # normalised-time interval over which the motion happens
    pivot: tuple[float, float, float] = (0.0, 0.0, 0.0)  # a point on the rotation axis

    def progress(self, s: float) -> float:
        """Fraction of the motion done at normalised time s: smoothstep over the window, 0 before, 1 after."""
        a, b = self.window
        u = float(np.clip((s - a) / max(b - a, 1e-9), 0.0, 1.0))
        return u * u * (3.0 - 2.0 * u)

    def pose(self, s: float) -> tuple[np.ndarray, np.ndarray]:
        """World-from-rest (R, t) at normalised time s."""
        p = self.progress(s)
        axis = np.asarray(self.axis, dtype=np.float64)
        if self.kind == "slide":
            return np.eye(3), axis * self.amount * p
        R = axis_angle(axis, np.radians(self.amount) * p)
        pivot = np.asarray(self.pivot, dtype=np.float64)
        return R, pivot - R @ pivot

    def matrix(self, s: float) -> np.ndarray:
        """The pose as a 4x4 world-from-rest matrix."""
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = self.pose(s)
        return T

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "axis": list(self.axis), "amount": self.amount,
                "amount_units": "metres" if self.kind == "slide" else "degrees", "window": list(self.window),
                "pivot": list(self.pivot)}


def axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix of `angle` radians about the unit `axis` (Rodrigues)."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * Kx + (1 - np.cos(angle)) * Kx @ Kx


def normalised_time(i: int, frames: int) -> float:
    """Frame i of `frames` on the capture's normalised time axis [0, 1]."""
    return i / (frames - 1) if frames > 1 else 0.0
