"""A small ray-cast test scene for depth and fusion tests: a textured box room with two blocks inside.

Colours come from 3D value noise evaluated at the hit points, so every surface is textured and every view
sees the same texture; depth is the OpenCV z of the first hit. trimesh + embreex does the ray casting.
"""
from __future__ import annotations

import numpy as np
import trimesh

from spatial.cameras import Camera, look_at


def room_mesh() -> trimesh.Trimesh:
    """Inward-facing 4 x 3 x 2.5 m room with two boxes on the floor (the true surface for tests)."""
    room = trimesh.creation.box(extents=(4.0, 3.0, 2.5))
    room.apply_translation((0.0, 0.0, 1.25))
    room.invert()
    a = trimesh.creation.box(extents=(0.8, 0.6, 0.7))
    a.apply_translation((0.3, 0.2, 0.35))
    b = trimesh.creation.box(extents=(0.4, 0.4, 1.1))
    b.apply_translation((-0.7, -0.4, 0.55))
    return trimesh.util.concatenate([room, a, b])


def _value_noise(p: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Trilinearly interpolated lattice noise in [0, 1] at points p (N, 3)."""
    q = p * scale
    i = np.floor(q).astype(np.int64)
    f = q - i
    f = f * f * (3 - 2 * f)

    def h(ix, iy, iz):
        v = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ (seed * 2654435761)
        v = (v ^ (v >> 13)) * 1274126177
        return ((v ^ (v >> 16)) & 0xFFFF) / 65535.0

    out = 0.0
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * \
                    (f[:, 2] if dz else 1 - f[:, 2])
                out = out + w * h(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz)
    return out


def texture(p: np.ndarray) -> np.ndarray:
    """Procedural RGB in [0, 1] at world points p (N, 3): multi-scale noise, different tint per channel."""
    n = 0.5 * _value_noise(p, 6.0, 1) + 0.3 * _value_noise(p, 17.0, 2) + 0.2 * _value_noise(p, 45.0, 3)
    m = _value_noise(p, 3.0, 4)
    return np.clip(np.stack([n, 0.6 * n + 0.4 * m, 0.8 * m + 0.2 * n], axis=1), 0, 1)


def cameras(n: int = 8, width: int = 160, height: int = 120, fov_deg: float = 70.0) -> list[Camera]:
    """n cameras on an arc inside the room, all looking at the blocks."""
    f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    cams = []
    for k in range(n):
        a = np.radians(-40 + 80 * k / max(n - 1, 1))
        eye = np.array([-1.3 * np.cos(a) + 0.0, 1.2 * np.sin(a), 1.5 + 0.1 * np.sin(3 * a)])
        R, t = look_at(eye, np.array([0.3, 0.0, 0.4]))
        cams.append(Camera(name=f"v{k:02d}", width=width, height=height, fx=f, fy=f, cx=(width - 1) / 2,
                           cy=(height - 1) / 2, R=R, t=t))
    return cams


def _cast(mesh, cam: Camera, px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First hits of rays through pixel coords px (N, 2): (z depth (N,), world points (N, 3)), z=0 on miss."""
    d_cam = np.stack([(px[:, 0] - cam.cx) / cam.fx, (px[:, 1] - cam.cy) / cam.fy, np.ones(len(px))], 1)
    d_world = d_cam @ cam.R
    origin = np.broadcast_to(cam.center, d_world.shape)
    loc, idx, _ = mesh.ray.intersects_location(origin, d_world, multiple_hits=False)
    z = np.zeros(len(px))
    pts = np.zeros((len(px), 3))
    z[idx] = ((loc - cam.center) @ cam.R.T)[:, 2]
    pts[idx] = loc
    return z, pts


def render(mesh, cam: Camera, ss: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 HxWx3 image with ss x ss supersampling, float32 HxW ground-truth z depth)."""
    H, W = cam.height, cam.width
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    z, _ = _cast(mesh, cam, np.stack([u.ravel(), v.ravel()], 1))
    o = (np.arange(ss) + 0.5) / ss - 0.5
    ou, ov = np.meshgrid(o, o)
    pu = (u.ravel()[:, None] + ou.ravel()[None]).ravel()
    pv = (v.ravel()[:, None] + ov.ravel()[None]).ravel()
    _, pts = _cast(mesh, cam, np.stack([pu, pv], 1))
    rgb = texture(pts).reshape(H * W, ss * ss, 3).mean(1).reshape(H, W, 3)
    return (rgb * 255 + 0.5).astype(np.uint8), z.reshape(H, W).astype(np.float32)


def scene(n: int = 8, width: int = 160, height: int = 120):
    """(mesh, cameras, images, gt depths) for a small capture of the room."""
    mesh = room_mesh()
    cams = cameras(n, width, height)
    out = [render(mesh, c) for c in cams]
    return mesh, cams, [o[0] for o in out], [o[1] for o in out]
