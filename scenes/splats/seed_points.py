"""Initial Gaussians from a bundle's fused coloured points (points.ply), as 3DGS initialises from SfM points."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scenes.splats.gaussians import SH_C0, Gaussians
from spatial import read_points
from twin_kit import InputError


def read_points_float(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A bundle's fused points as (N,3) float64 positions and (N,3) colours in [0, 1], for initialisation."""
    xyz, rgb = read_points(path)
    return xyz.astype(np.float64), rgb.astype(np.float64) / 255.0


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
