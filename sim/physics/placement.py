"""Refuse robot poses that put the robot inside the scan's geometry.

Points sampled on the robot's collision meshes at its home pose are compared with the scene surface near
them: a point behind the closest scene triangle (against its normal) by more than `tol` and less than
`depth` is inside the geometry. The depth bound keeps open scans (a table top without an underside) from
flagging everything below them.
"""
from __future__ import annotations

import numpy as np

from sim.physics.scene_mesh import SceneMesh
from twin_kit import InputError, qrot


def robot_points(builder, body_q: np.ndarray, per_shape: int = 400) -> np.ndarray:
    """World points on the robot's colliding mesh shapes (vertices, subsampled), given body poses (B, 7);
    visual-only shapes take up no space."""
    from newton import ShapeFlags

    collide = int(ShapeFlags.COLLIDE_SHAPES)
    pts = []
    rng = np.random.default_rng(0)
    for s, src in enumerate(builder.shape_source):
        body = builder.shape_body[s]
        if body < 0 or src is None or not hasattr(src, "vertices") or not builder.shape_flags[s] & collide:
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
    if bad.sum() >= max(3, 0.002 * len(bad)):  # a few stray points may be scan noise
        c = pts[bad].mean(0)
        raise InputError(f"robot {name!r} at ({base_pos[0]:.3f}, {base_pos[1]:.3f}, {base_pos[2]:.3f}) is inside the "
                         f"scan's geometry ({int(bad.sum())} of {len(bad)} surface samples, around "
                         f"{c[0]:.2f}, {c[1]:.2f}, {c[2]:.2f}); choose another --robot-pose")


def _surface_height(scene: SceneMesh, xy: np.ndarray) -> np.ndarray:
    """Height of the topmost scene surface below a high point at each xy (nan where nothing is hit)."""
    import trimesh

    mesh = trimesh.Trimesh(scene.vertices, scene.faces, process=False)
    top = float(scene.vertices[:, 2].max()) + 1.0
    origins = np.column_stack([xy, np.full(len(xy), top)])
    loc, idx, _ = mesh.ray.intersects_location(origins, np.tile([0.0, 0.0, -1.0], (len(xy), 1)),
                                               multiple_hits=False)
    h = np.full(len(xy), np.nan)
    h[idx] = loc[:, 2]
    return h


def find_clear_pose(scene: SceneMesh, points_at_origin: np.ndarray, spacing: float = 0.1,
                    max_radius: float = 1.5) -> tuple[float, float, float, float] | None:
    """A base pose (x, y, z, yaw) on the support surface, nearest its centre, where the robot is clear.

    `points_at_origin` are robot surface points for a base at the origin with zero yaw. Candidates lie on
    rings around the support centre with the robot facing the centre; a candidate needs the support surface
    under its base and no penetration.
    """
    cx, cy = scene.support_center
    cands = [(cx, cy, 0.0)]
    for r in np.arange(spacing, max_radius + 1e-9, spacing):
        n = max(6, int(2 * np.pi * r / spacing))
        for a in np.linspace(0, 2 * np.pi, n, endpoint=False):
            cands.append((cx + r * np.cos(a), cy + r * np.sin(a), a + np.pi))
    cands = np.array(cands)
    h = _surface_height(scene, cands[:, :2])
    ok = np.abs(h - scene.support_height) < 0.02
    for x, y, yaw in cands[ok]:
        c, s = np.cos(yaw), np.sin(yaw)
        R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        pts = points_at_origin @ R.T + np.array([x, y, scene.support_height])
        bad = penetrating(scene, pts)
        if bad.sum() < max(3, 0.002 * len(bad)):
            return float(x), float(y), float(scene.support_height), float(yaw)
    return None
