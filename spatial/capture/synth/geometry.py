"""Camera-ray geometry of the renderer, in the pixel-centre convention, without BLAS calls.

Small (N, 3) x (3, 3) products are written out by hand: numpy hands them to a multi-threaded BLAS
whose threads stall for ~0.1 s per call when the machine is busy, which dominated frame times.
"""
from __future__ import annotations

import functools

import numpy as np

from spatial.cameras import Camera


def rows_at(a: np.ndarray, M: np.ndarray) -> np.ndarray:
    """a @ M for a (..., 3) and M (3, k) or (3,), as three broadcast multiply-adds."""
    M = np.asarray(M, dtype=a.dtype if a.dtype == np.float32 else np.float64)
    if M.ndim == 1:
        return a[..., 0] * M[0] + a[..., 1] * M[1] + a[..., 2] * M[2]
    return a[..., 0:1] * M[0] + a[..., 1:2] * M[1] + a[..., 2:3] * M[2]


@functools.lru_cache(maxsize=8)
def _camera_rays(width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    d = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1).reshape(-1, 3)
    d.setflags(write=False)
    return d


def pixel_rays(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre (3,) and world ray directions (H*W, 3) with camera-z component 1, row-major pixels."""
    d_cam = _camera_rays(cam.width, cam.height, float(cam.fx), float(cam.fy), float(cam.cx), float(cam.cy))
    return cam.center, rows_at(d_cam, cam.R)  # R^T d for every row


def unproject(depth: np.ndarray, cam: Camera) -> np.ndarray:
    """World points (H, W, 3) of a z-depth map; pixels with depth 0 give the camera centre."""
    _, dirs = pixel_rays(cam)
    return (cam.center + depth.reshape(-1, 1).astype(np.float64) * dirs).reshape(cam.height, cam.width, 3)


def project(points: np.ndarray, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (..., 2) and camera z (...) of world points (..., 3)."""
    x = rows_at(points, cam.R.T) + cam.t
    z = x[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([cam.fx * x[..., 0] / z + cam.cx, cam.fy * x[..., 1] / z + cam.cy], -1)
    return uv, z
