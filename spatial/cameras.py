"""Pinhole cameras in Twin's convention: OpenCV axes, world-to-camera poses, metres once aligned."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class Camera:
    """One frame's camera: intrinsics plus world-to-camera pose (x_cam = R @ x_world + t)."""

    name: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))
    dist: list[float] = field(default_factory=list)  # OpenCV order k1 k2 p1 p2 [k3]; empty = undistorted
    timestamp: float | None = None
    image: str | None = None  # path relative to the bundle root

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.R.T @ self.t

    @property
    def world_to_cam(self) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = self.R
        T[:3, 3] = self.t
        return T

    @property
    def cam_to_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_to_cam)

    def scaled(self, s: float) -> Camera:
        """The same camera for an image resized by factor s (pixel-centre convention)."""
        w, h = int(round(self.width * s)), int(round(self.height * s))
        sx, sy = w / self.width, h / self.height
        return replace(self, width=w, height=h, fx=self.fx * sx, fy=self.fy * sy,
                       cx=(self.cx + 0.5) * sx - 0.5, cy=(self.cy + 0.5) * sy - 0.5)

    def transformed(self, S: np.ndarray) -> Camera:
        """This camera after the world is mapped by similarity S (4x4, x' = s R x + t)."""
        A = S[:3, :3]
        s = float(np.cbrt(np.linalg.det(A)))
        Rw = A / s
        R_new = self.R @ Rw.T
        c_new = A @ self.center + S[:3, 3]
        return replace(self, R=R_new, t=-R_new @ c_new)

    def to_json(self) -> dict:
        return {
            "name": self.name, "image": self.image, "width": self.width, "height": self.height,
            "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "distortion": list(self.dist),
            "world_to_camera": np.asarray(self.world_to_cam).tolist(), "timestamp": self.timestamp,
        }

    @staticmethod
    def from_json(d: dict) -> Camera:
        T = np.asarray(d["world_to_camera"], dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError(f"camera {d.get('name')!r}: world_to_camera must be a finite 4x4 matrix")
        return Camera(name=d["name"], width=int(d["width"]), height=int(d["height"]), fx=float(d["fx"]),
                      fy=float(d["fy"]), cx=float(d["cx"]), cy=float(d["cy"]), R=T[:3, :3].copy(),
                      t=T[:3, 3].copy(), dist=list(d.get("distortion") or []), timestamp=d.get("timestamp"),
                      image=d.get("image"))


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t) of an OpenCV camera at `eye` looking at `target` with world `up` on screen top."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ eye
