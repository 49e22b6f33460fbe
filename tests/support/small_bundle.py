"""A tiny but complete scene bundle for viewer and export tests: splats, points, collision box, cameras, images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spatial.bundle import finalize_manifest, new_manifest, staged_bundle, write_cameras
from spatial.cameras import Camera, look_at

PALETTE = np.array([[0.9, 0.15, 0.1], [0.1, 0.7, 0.2], [0.15, 0.3, 0.95], [0.95, 0.85, 0.1]])


def small_gaussians(n: int = 600, sh_degree: int = 1, seed: int = 0):
    """Opaque, fairly large Gaussians in a 1 m cube, coloured by quadrant (so views have distinct colours)."""
    from scenes.splats.gaussians import SH_C0, Gaussians

    rng = np.random.default_rng(seed)
    means = rng.uniform(-0.5, 0.5, (n, 3))
    quad = (means[:, 0] > 0).astype(int) + 2 * (means[:, 1] > 0).astype(int)
    rgb = PALETTE[quad]
    k1 = (sh_degree + 1) ** 2 - 1
    sh_rest = rng.normal(0, 0.02, (n, k1, 3))
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return Gaussians(means=f(means), quats=f(rng.normal(size=(n, 4))),
                     log_scales=f(np.log(rng.uniform(0.04, 0.08, (n, 3)))),
                     opacity_logits=f(np.full(n, 3.0)), sh_dc=f((rgb - 0.5) / SH_C0), sh_rest=f(sh_rest))


def ring_cameras(n: int = 4, radius: float = 3.0, w: int = 160, h: int = 120) -> list[Camera]:
    cams = []
    for i in range(n):
        a = 2 * np.pi * i / n
        eye = np.array([radius * np.cos(a), radius * np.sin(a), 1.0])
        R, t = look_at(eye, np.zeros(3))
        cams.append(Camera(name=f"frame_{i:03d}", width=w, height=h, fx=150.0, fy=150.0, cx=(w - 1) / 2,
                           cy=(h - 1) / 2, R=R, t=t, image=f"images/frame_{i:03d}.png", timestamp=float(i)))
    return cams


def write_points_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    from plyfile import PlyData, PlyElement

    arr = np.empty(len(xyz), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                    ("blue", "u1")])
    for i, c in enumerate("xyz"):
        arr[c] = xyz[:, i]
    for i, c in enumerate(("red", "green", "blue")):
        arr[c] = rgb[:, i]
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))


def make_bundle(dest: Path, splats: bool = True, metric: bool = True, n: int = 600, sh_degree: int = 1) -> Path:
    """Write the bundle at `dest` (splats.ply optional) and return its path."""
    import cv2
    import trimesh

    from scenes.splats.gaussians import write_splats_ply

    with staged_bundle(dest, overwrite=True) as tmp:
        g = small_gaussians(n, sh_degree)
        if splats:
            write_splats_ply(tmp / "splats.ply", g)
        rgb = np.clip(0.5 + 0.28209479177387814 * g.sh_dc.numpy(), 0, 1)
        write_points_ply(tmp / "points.ply", g.means.numpy(), (rgb * 255).astype(np.uint8))
        box = trimesh.creation.box(extents=(1.2, 1.2, 1.2))
        box.visual.vertex_colors = np.tile([[120, 130, 150, 255]], (len(box.vertices), 1))
        box.export(tmp / "collision.ply")
        cams = ring_cameras()
        (tmp / "images").mkdir()
        for i, c in enumerate(cams):
            img = np.full((c.height, c.width, 3), 40 * i, np.uint8)
            cv2.imwrite(str(tmp / c.image), img)
        write_cameras(tmp, cams)
        m = new_manifest(input="synthetic test bundle")
        if metric:
            m["scale"] = {"metric": True, "source": "test", "metres_per_unit": 1.0}
        finalize_manifest(tmp, m)
    return Path(dest)
