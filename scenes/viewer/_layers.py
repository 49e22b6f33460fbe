"""What the viewer draws, loaded from a bundle: splats (within a display budget), points, collision mesh, cameras.

Loading is separate from drawing so that bad files fail before the server starts, and so that tests can
compute exactly what the browser was sent (e.g. the same subsample, the same colours).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scenes.splats.gaussians import SH_C0, Gaussians
from spatial import Bundle, Camera, read_collision_mesh, read_points
from twin_kit import quat_to_rotmat


@dataclass
class SplatLayer:
    """Splats as viser draws them: centres, 3x3 covariances, base (SH degree-0) colours, opacities."""

    centers: np.ndarray  # (M, 3) float32
    covariances: np.ndarray  # (M, 3, 3) float32
    rgbs: np.ndarray  # (M, 3) float32 in [0, 1]
    opacities: np.ndarray  # (M, 1) float32 in [0, 1]
    index: np.ndarray  # (M,) indices into the file's Gaussians
    n_total: int

    @property
    def subsampled(self) -> bool:
        return len(self.index) < self.n_total


@dataclass
class SceneLayers:
    """Everything a bundle offers the viewer; absent parts are None."""

    splats: SplatLayer | None = None
    points: tuple[np.ndarray, np.ndarray] | None = None  # (P,3) float32, (P,3) uint8
    mesh: object | None = None  # trimesh.Trimesh
    mesh_file: str | None = None
    cameras: list[Camera] = field(default_factory=list)
    dynamic: object | None = None  # scenes.dynamic.model.DynamicSplats when the bundle has dynamic/ (drawn at t=0)
    extent: float = 1.0  # robust scene diameter, sets frustum / point / grid sizes
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    floor_z: float = 0.0


def display_order(g: Gaussians) -> np.ndarray:
    """Gaussians ranked by how much they show (opacity x projected area proxy), most visible first."""
    op = g.opacities.detach().cpu().numpy().astype(np.float64)
    s = g.scales.detach().cpu().numpy().astype(np.float64)
    area = np.sort(s, axis=1)[:, 1:].prod(axis=1)  # two largest axes
    return np.argsort(-(op * area), kind="stable")


def splat_layer(g: Gaussians, budget: int, index: np.ndarray | None = None, n_total: int | None = None
                ) -> SplatLayer:
    """Viser's splat inputs for at most `budget` Gaussians (the most visible ones when over budget); with
    `index`, `g` already holds just those of `n_total` Gaussians (a dynamic set at another time)."""
    n = len(g) if n_total is None else n_total
    if index is not None:
        idx, sub = index, g
    else:
        idx = np.arange(n) if n <= budget else np.sort(display_order(g)[:max(budget, 1)])
        sub = g.subset(idx)
    Rm = quat_to_rotmat(sub.quats.detach().cpu().numpy())
    s = sub.scales.detach().cpu().numpy().astype(np.float64)
    cov = np.einsum("nij,nj,nkj->nik", Rm, s * s, Rm)
    rgb = np.clip(0.5 + SH_C0 * sub.sh_dc.detach().cpu().numpy(), 0.0, 1.0)
    op = sub.opacities.detach().cpu().numpy()[:, None]
    return SplatLayer(centers=sub.means.detach().cpu().numpy().astype(np.float32),
                      covariances=cov.astype(np.float32), rgbs=rgb.astype(np.float32),
                      opacities=op.astype(np.float32), index=idx, n_total=n)


def load_layers(bundle: Bundle, budget: int = 300_000, max_points: int = 1_000_000) -> SceneLayers:
    """Read every drawable part of a bundle; damaged files raise InputError, missing ones are left None."""
    out = SceneLayers(cameras=list(bundle.cameras))
    paths = bundle.paths
    if paths.dynamic_config.exists():  # a moving scene: its 4D splats, drawn at the first frame's time
        from scenes.dynamic.model import load_dynamic

        out.dynamic = load_dynamic(bundle.root)
        out.splats = splat_layer(out.dynamic.at(0.0), budget)
    elif paths.splats.exists():
        from scenes.splats.gaussians import read_splats_ply

        out.splats = splat_layer(read_splats_ply(paths.splats), budget)
    if paths.points.exists():
        xyz, rgb = read_points(paths.points)
        if len(xyz) > max_points:
            keep = np.random.default_rng(0).choice(len(xyz), max_points, replace=False)
            xyz, rgb = xyz[keep], rgb[keep]
        out.points = (xyz, rgb)
    mp = paths.find_collision()
    if mp is not None:
        out.mesh, out.mesh_file = read_collision_mesh(mp), mp.name
    _measure(out)
    return out


def _measure(layers: SceneLayers) -> None:
    """Robust centre, diameter and floor height of the scene content (ignores far outliers)."""
    parts = []
    if layers.splats is not None:
        parts.append(layers.splats.centers)
    if layers.points is not None:
        parts.append(layers.points[0])
    if layers.mesh is not None:
        parts.append(np.asarray(layers.mesh.vertices, np.float32))
    if not parts and layers.cameras:
        parts.append(np.stack([c.center for c in layers.cameras]).astype(np.float32))
    if not parts:
        return
    p = np.concatenate(parts)
    if len(p) > 200_000:
        p = p[np.random.default_rng(0).choice(len(p), 200_000, replace=False)]
    lo, hi = np.percentile(p, 2, axis=0), np.percentile(p, 98, axis=0)
    layers.center = (lo + hi) / 2
    layers.extent = float(max(np.linalg.norm(hi - lo), 1e-3))
    layers.floor_z = float(lo[2])


def nice_length(x: float) -> float:
    """The largest 1, 2 or 5 x 10^k not above x (for grid cells and scale bars)."""
    if x <= 0:
        return 1.0
    e = np.floor(np.log10(x))
    for m in (5.0, 2.0, 1.0):
        if m * 10 ** e <= x:
            return float(m * 10 ** e)
    return float(10 ** e)


def camera_pose_viser(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz, position) of an OpenCV camera as viser wants them: camera-to-world rotation and centre."""
    import viser.transforms as tf

    return tf.SO3.from_matrix(np.asarray(cam.R, np.float64).T).wxyz, cam.center


def thumbnail(path: Path, max_side: int = 160) -> np.ndarray | None:
    """A small RGB uint8 copy of an image for a frustum, or None when the image cannot be read."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s < 1:
        img = cv2.resize(img, (max(int(w * s), 1), max(int(h * s), 1)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[:, :, ::-1])
