"""A small analytic scene for the restyle tests: a table top, floor, back wall, a cube object and a robot column.

Ray cast in closed form per pixel (planes and axis-aligned boxes), so depth, segmentation and normals are exact
and independent of the restyler's own geometry code.
"""
from __future__ import annotations

import numpy as np
import torch

from spatial import look_at as spatial_look_at

TABLE_Z = 0.75
TABLE_HALF = (0.6, 0.4)         # table top extent in x, y around the origin
CUBE = ((0.15, -0.12, TABLE_Z), 0.04)    # base centre, half size
COLUMN = ((-0.3, 0.15, TABLE_Z), 0.05, 0.5)  # base centre, half width, height
WALL_Y = 1.5


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 world-to-camera of an OpenCV camera at eye looking at target (spatial.look_at as a matrix)."""
    R, t = spatial_look_at(eye, target, up)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def intrinsics(w: int, h: int, f: float | None = None) -> np.ndarray:
    f = float(w) if f is None else f
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])


def _box(o, d, lo, hi):
    """Slab test: (t, normal) for rays o + t d against the box [lo, hi] (t = inf on a miss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - o) / d, (hi - o) / d
    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
    tn, tf = np.nanmax(tmin, -1), np.nanmin(tmax, -1)
    hit = (tn <= tf) & (tn > 0)
    ax = np.nanargmax(tmin, -1)
    n = np.zeros_like(o + 0 * d)
    np.put_along_axis(n, ax[..., None], -np.sign(np.take_along_axis(d, ax[..., None], -1)), -1)
    return np.where(hit, tn, np.inf), n


def render(world_to_cam: np.ndarray, K: np.ndarray, w: int, h: int, objects: bool = True) -> dict:
    """One view: rgb (H, W, 3), depth (H, W, 1), seg (H, W), normal (H, W, 3) as torch tensors."""
    R, t = world_to_cam[:3, :3], world_to_cam[:3, 3]
    c = -R.T @ t
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    d = np.stack([u, v, np.ones_like(u)], -1).astype(float) @ np.linalg.inv(K).T @ R   # camera z = 1
    o = np.broadcast_to(c, d.shape)
    best = np.full((h, w), np.inf)
    seg = np.zeros((h, w), np.int64)
    nrm = np.zeros((h, w, 3))

    def take(tc, cls, n):
        nonlocal best
        m = tc < best
        best = np.where(m, tc, best)
        seg[m] = cls
        nrm[m] = n[m] if n.ndim == 3 else n

    with np.errstate(divide="ignore", invalid="ignore"):
        tt = (TABLE_Z - o[..., 2]) / d[..., 2]
        p = o + tt[..., None] * d
        on = (np.abs(p[..., 0]) <= TABLE_HALF[0]) & (np.abs(p[..., 1]) <= TABLE_HALF[1]) & (tt > 0)
        take(np.where(on, tt, np.inf), 1, np.array([0, 0, 1.0]))
        tf = -o[..., 2] / d[..., 2]
        take(np.where(tf > 0, tf, np.inf), 1, np.array([0, 0, 1.0]))
        tw = (WALL_Y - o[..., 1]) / d[..., 1]
        take(np.where(tw > 0, tw, np.inf), 1, np.array([0, -1.0, 0]))
    table_box_lo = np.array([-TABLE_HALF[0], -TABLE_HALF[1], 0.0])
    tb, nb = _box(o, d, table_box_lo, np.array([TABLE_HALF[0], TABLE_HALF[1], TABLE_Z - 1e-4]))
    take(tb, 1, nb)
    if objects:
        (cx, cy, cz), a = CUBE
        tc, nc = _box(o, d, np.array([cx - a, cy - a, cz]), np.array([cx + a, cy + a, cz + 2 * a]))
        take(tc, 3, nc)
        (cx, cy, cz), a, hgt = COLUMN
        tr, nr = _box(o, d, np.array([cx - a, cy - a, cz]), np.array([cx + a, cy + a, cz + hgt]))
        take(tr, 2, nr)
    P = o + np.where(np.isfinite(best), best, 0)[..., None] * d
    rgb = np.zeros((h, w, 3))
    rgb[seg == 1] = [0.55, 0.5, 0.45]
    wall = (seg == 1) & (P[..., 2] > 0.01) & (np.abs(P[..., 1] - WALL_Y) < 1e-3)
    rgb[wall] = np.c_[0.6 + 0.2 * np.sin(P[wall][:, 0] * 3), np.full(wall.sum(), 0.6), np.full(wall.sum(), 0.7)]
    rgb[seg == 3] = [0.8, 0.1, 0.1]
    rgb[seg == 2] = [0.85, 0.85, 0.85]
    shade = 0.45 + 0.55 * np.clip(nrm @ np.array([0.35, -0.35, 0.87]), 0, 1)
    rgb = np.clip(rgb * shade[..., None] + 0.05 * np.sin(P[..., :1] * 40) * (seg == 1)[..., None], 0, 1)
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return {"rgb": f(rgb), "depth": f(best[..., None]), "seg": torch.tensor(seg), "normal": f(nrm)}


def episode(poses: list[np.ndarray], K: np.ndarray, w: int, h: int, objects: bool = True):
    """rgb (T, H, W, 3) and maps (depth, seg, normal, K, world_to_cam, support_height) for several views."""
    views = [render(p, K, w, h, objects) for p in poses]
    rgb = torch.stack([v["rgb"] for v in views])
    maps = {k: torch.stack([v[k] for v in views]) for k in ("depth", "seg", "normal")}
    maps.update(K=torch.tensor(K, dtype=torch.float32), support_height=TABLE_Z,
                world_to_cam=torch.tensor(np.stack(poses), dtype=torch.float32))
    return rgb, maps


def side_view(w: int = 128, h: int = 128, eye=(1.1, -0.9, 1.45)) -> np.ndarray:
    return look_at(np.array(eye), np.array([0.0, 0.0, TABLE_Z]))
