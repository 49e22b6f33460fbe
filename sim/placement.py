"""Refuse robot poses that put the robot inside the scan's geometry.

Points sampled on the robot's collision meshes at its home pose are compared with the scene surface near
them: a point behind the closest scene triangle (against its normal) by more than `tol` and less than
`depth` is inside the geometry. The depth bound keeps open scans (a table top without an underside) from
flagging everything below them.
"""
from __future__ import annotations

import numpy as np

from spatial.errors import InputError

from ._quat import qrot
from .scene_mesh import SceneMesh


def robot_points(builder, body_q: np.ndarray, per_shape: int = 400) -> np.ndarray:
    """World points on the robot's mesh shapes (vertices, subsampled), given body poses (B, 7)."""
    pts = []
    rng = np.random.default_rng(0)
    for s, src in enumerate(builder.shape_source):
        body = builder.shape_body[s]
        if body < 0 or src is None or not hasattr(src, "vertices"):
            continue
        v = np.asarray(src.vertices, dtype=np.float64) * np.asarray(builder.shape_scale[s], dtype=np.float64)
        if len(v) > per_shape:
            v = v[rng.choice(len(v), per_shape, replace=False)]
        xf = np.asarray(builder.shape_transform[s], dtype=np.float64)
        v = qrot(xf[3:], v) + xf[:3]
        bq = body_q[body]
        pts.append(qrot(bq[3:], v) + bq[:3])
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def penetrating(scene: SceneMesh, points: np.ndarray, tol: float = 0.01, depth: float = 0.15) -> np.ndarray:
    """Boolean mask of points that lie inside the scene surface (behind it by tol..depth metres)."""
    import trimesh

    if not len(points):
        return np.zeros(0, dtype=bool)
    lo, hi = points.min(0) - depth, points.max(0) + depth
    tri = scene.vertices[scene.faces]
    near = ((tri.max(1) >= lo) & (tri.min(1) <= hi)).all(1)
    if not near.any():
        return np.zeros(len(points), dtype=bool)
    from scipy.spatial import cKDTree

    sub = trimesh.Trimesh(scene.vertices, scene.faces[near], process=False)
    count = int(np.clip(sub.area / (0.4 * tol) ** 2, 1000, 400_000))  # surface samples ~0.4 tol apart
    samples, fid = trimesh.sample.sample_surface(sub, count, seed=0)
    dist, idx = cKDTree(samples).query(points)
    closest, n = samples[idx], sub.face_normals[fid[idx]]
    side = np.einsum("ij,ij->i", points - closest, n)
    return (side < -tol) & (dist < depth)


def check_clear(scene: SceneMesh, builder, body_q: np.ndarray, name: str, base_pos) -> None:
    """Raise InputError when the robot at its home pose penetrates the scan."""
    pts = robot_points(builder, body_q)
    bad = penetrating(scene, pts)
    if bad.mean() > 0.01 if len(bad) else False:
        c = pts[bad].mean(0)
        raise InputError(f"robot {name!r} at ({base_pos[0]:.3f}, {base_pos[1]:.3f}, {base_pos[2]:.3f}) is inside the "
                         f"scan's geometry ({bad.mean() * 100:.0f}% of its surface, around "
                         f"{c[0]:.2f}, {c[1]:.2f}, {c[2]:.2f}); choose another --robot-pose")
