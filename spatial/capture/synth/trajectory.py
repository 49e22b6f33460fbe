"""A hand-held phone walking around the table: smooth orbit, wandering aim, hand shake and exposure drift.

Every quantity is a continuous function of time (sums of random sinusoids), so the pose at any instant
inside a frame's exposure is defined, which is what the motion blur in `render` needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatial.cameras import Camera, look_at


@dataclass
class SmoothNoise:
    """Sum of random sinusoids, unit standard deviation per channel; frequencies in Hz."""

    freqs: np.ndarray  # (C, K)
    phases: np.ndarray  # (C, K)
    amps: np.ndarray  # (C, K)

    @staticmethod
    def make(rng: np.random.Generator, channels: int, band: tuple[float, float], k: int = 4) -> SmoothNoise:
        freqs = rng.uniform(*band, size=(channels, k))
        phases = rng.uniform(0, 2 * np.pi, size=(channels, k))
        amps = rng.uniform(0.5, 1.0, size=(channels, k))
        amps *= np.sqrt(2.0) / np.linalg.norm(amps, axis=1, keepdims=True)  # variance of a sinusoid = a^2 / 2
        return SmoothNoise(freqs, phases, amps)

    def __call__(self, t: float) -> np.ndarray:
        return (self.amps * np.sin(2 * np.pi * self.freqs * t + self.phases)).sum(axis=1)


def _rotvec_matrix(r: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(r))
    if th < 1e-12:
        return np.eye(3)
    k = r / th
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * Kx + (1 - np.cos(th)) * Kx @ Kx


@dataclass
class Trajectory:
    """Phone path and exposure as functions of time t in seconds, over [0, duration]."""

    duration: float
    start_angle: float
    arc: float
    radius: float
    height: float
    target: np.ndarray
    shake: float
    wander: SmoothNoise  # slow: radius, height, aim x/y/z, roll, speed
    tremor: SmoothNoise  # fast: translation xyz, rotation xyz
    gain_noise: SmoothNoise
    gain_std: float

    def pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """World-to-camera (R, t) at time t."""
        w = self.wander(t)
        s = t / self.duration if self.duration > 0 else 0.0
        s = s + 0.02 * w[6] * np.sin(np.pi * s)  # uneven walking speed, ends fixed
        ang = self.start_angle + self.arc * s
        r = self.radius + 0.07 * w[0]
        eye = np.array([r * np.cos(ang), r * np.sin(ang), self.height + 0.05 * w[1]])
        aim = self.target + np.array([0.08 * w[2], 0.08 * w[3], 0.03 * w[4]])
        tr = self.tremor(t)
        eye = eye + self.shake * 0.006 * tr[:3]
        R, _ = look_at(eye, aim)
        jitter = self.shake * np.radians(np.array([0.5, 0.5, 0.4]) * tr[3:] + np.array([0, 0, 2.0 * w[5]]))
        R = _rotvec_matrix(jitter) @ R  # small rotation in the camera frame (pitch, yaw, roll)
        return R, -R @ eye

    def gain(self, t: float) -> float:
        """Auto-exposure gain: log-normal, drifting smoothly."""
        return float(np.exp(self.gain_std * self.gain_noise(t)[0]))


def make_trajectory(seed: int, frames: int, fps: float, radius: float, height: float, arc_deg: float,
                    shake: float, gain_std: float, target: np.ndarray) -> Trajectory:
    """A deterministic hand-held orbit for a capture of `frames` frames at `fps`."""
    rng = np.random.default_rng([seed, 3301])
    return Trajectory(
        duration=max(frames - 1, 1) / fps, start_angle=rng.uniform(0, 2 * np.pi), arc=np.radians(arc_deg),
        radius=radius, height=height, target=np.asarray(target, dtype=np.float64), shake=shake,
        wander=SmoothNoise.make(rng, 7, (0.05, 0.35)), tremor=SmoothNoise.make(rng, 6, (0.8, 4.0)),
        gain_noise=SmoothNoise.make(rng, 1, (0.1, 0.6)), gain_std=gain_std)


def phone_camera(name: str, width: int, height: int, hfov_deg: float, R: np.ndarray, t: np.ndarray,
                 timestamp: float, image: str | None) -> Camera:
    """An undistorted phone camera with square pixels and the principal point at the image centre.

    Pixel centres are at integer coordinates, so the centre of a W-wide image is at (W - 1) / 2.
    """
    fx = (width / 2) / np.tan(np.radians(hfov_deg) / 2)
    return Camera(name=name, width=width, height=height, fx=float(fx), fy=float(fx), cx=(width - 1) / 2,
                  cy=(height - 1) / 2, R=np.asarray(R, dtype=np.float64), t=np.asarray(t, dtype=np.float64),
                  dist=[], timestamp=float(timestamp), image=image)
