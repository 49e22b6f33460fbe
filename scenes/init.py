"""Initial Gaussians from a bundle's fused coloured points (points.ply), as 3DGS initialises from SfM points."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spatial.errors import InputError

from .gaussians import SH_C0, Gaussians


def read_points_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(N,3) float positions and (N,3) float colours in [0,1] from a PLY with x,y,z,red,green,blue."""
    from plyfile import PlyData

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no fused point cloud (run `twin reconstruct` first)")
    try:
        v = PlyData.read(str(path))["vertex"].data
    except Exception as e:  # plyfile raises many types on damaged files
        raise InputError(f"{path}: damaged or unreadable PLY ({type(e).__name__}: {e})") from None
    names = set(v.dtype.names or ())
    if not {"x", "y", "z"} <= names:
        raise InputError(f"{path}: point cloud has no x, y, z properties")
    xyz = np.stack([np.asarray(v[c], np.float64) for c in "xyz"], 1)
    if {"red", "green", "blue"} <= names:
        rgb = np.stack([np.asarray(v[c], np.float64) for c in ("red", "green", "blue")], 1)
        if rgb.max(initial=0) > 1.0:
            rgb = rgb / 255.0
    else:
        rgb = np.full_like(xyz, 0.5)
    ok = np.isfinite(xyz).all(1)
    return xyz[ok], np.clip(rgb[ok], 0, 1)


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """SH band-0 coefficient whose colour (after the +0.5 offset) is `rgb`."""
    return (rgb - 0.5) / SH_C0


def gaussians_from_points(xyz: np.ndarray, rgb: np.ndarray, sh_degree: int = 3, init_opacity: float = 0.1,
                          max_points: int | None = None, seed: int = 0) -> Gaussians:
    """Isotropic Gaussians at the points: scale = mean distance to the 3 nearest neighbours, identity rotation."""
    from scipy.spatial import cKDTree

    if len(xyz) < 4:
        raise InputError(f"only {len(xyz)} points to initialise splats from (need at least 4)")
    if max_points is not None and len(xyz) > max_points:
        keep = np.random.default_rng(seed).choice(len(xyz), max_points, replace=False)
        xyz, rgb = xyz[keep], rgb[keep]
    d, _ = cKDTree(xyz).query(xyz, k=4)
    dist = np.maximum(d[:, 1:].mean(1), 1e-7)
    n = len(xyz)
    k = (sh_degree + 1) ** 2
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    p = float(np.clip(init_opacity, 1e-4, 1 - 1e-4))
    return Gaussians(
        means=torch.from_numpy(xyz).float(),
        quats=quats,
        log_scales=torch.from_numpy(np.log(dist)).float()[:, None].repeat(1, 3),
        opacity_logits=torch.full((n,), float(np.log(p / (1 - p)))),
        sh_dc=rgb_to_sh_dc(torch.from_numpy(rgb).float()),
        sh_rest=torch.zeros(n, k - 1, 3),
    )


def scene_extent(camera_centres: np.ndarray) -> float:
    """3DGS's scene scale: 1.1 x the largest distance of a camera centre from their mean."""
    c = np.asarray(camera_centres, np.float64)
    return float(1.1 * np.linalg.norm(c - c.mean(0), axis=1).max()) or 1.0
