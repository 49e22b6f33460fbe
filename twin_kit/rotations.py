"""Rotations: quaternion and transform helpers in Warp's xyzw order (NumPy), and 3DGS wxyz to matrices."""
from __future__ import annotations

import numpy as np


def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b."""
    ax, ay, az, aw = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bx, by, bz, bw = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz], -1)


def qconj(q: np.ndarray) -> np.ndarray:
    return np.asarray(q, dtype=np.float64) * np.array([-1.0, -1.0, -1.0, 1.0])


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors v (..., 3) by unit quaternions q (..., 4)."""
    q = np.asarray(q, dtype=np.float64)
    u, w = q[..., :3], q[..., 3:]
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


CV_TO_GL = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes -> OpenGL (x right, y up, looking along -z)


def qmat(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of unit quaternions."""
    eye = np.eye(3)
    return np.stack([qrot(q, eye[i]) for i in range(3)], -1)


def tmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Compose transforms (..., 7) as position + quaternion: a * b."""
    return np.concatenate([a[..., :3] + qrot(a[..., 3:], b[..., :3]), qmul(a[..., 3:], b[..., 3:])], -1)


def tinv(a: np.ndarray) -> np.ndarray:
    """Inverse of transforms (..., 7) as position + quaternion."""
    r = qconj(a[..., 3:])
    return np.concatenate([-qrot(r, a[..., :3]), r], -1)


def quat_to_rotmat(q):
    """(N,4) wxyz quaternions of any norm -> (N,3,3) rotation matrices; torch in, torch out (autograd kept),
    NumPy in, NumPy float64 out. This is the Gaussian-splat (3DGS) order, unlike the xyzw helpers above."""
    import torch

    is_np = not isinstance(q, torch.Tensor)
    t = torch.as_tensor(np.asarray(q, dtype=np.float64)) if is_np else q
    w, x, y, z = torch.nn.functional.normalize(t, dim=-1, eps=1e-12).unbind(-1)
    m = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(-1, 3, 3)
    return m.numpy() if is_np else m
