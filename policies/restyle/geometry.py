"""Per-pixel geometry of a render from its depth map and camera: rays, world points, normals, the table mask.

Conventions (Twin's): OpenCV cameras with pixel centres at integer coordinates, world_to_cam maps world to
camera (x_cam = R x_world + t), depth is the camera z of the nearest surface (inf = nothing), world +Z up.
A ray's direction is scaled so that its parameter equals that depth: point = centre + depth * direction.
"""
from __future__ import annotations

import torch


def camera_rays(K: torch.Tensor, world_to_cam: torch.Tensor, height: int, width: int):
    """(centres (T, 3), directions (T, H, W, 3)) in world coordinates; a direction's camera z is 1."""
    u = torch.arange(width, dtype=torch.float32)
    v = torch.arange(height, dtype=torch.float32)
    pix = torch.stack([u[None, :].expand(height, width), v[:, None].expand(height, width),
                       torch.ones(height, width)], dim=-1)                       # (H, W, 3)
    d_cam = pix @ torch.linalg.inv(K.float()).T                                  # z = 1
    R, t = world_to_cam[:, :3, :3].float(), world_to_cam[:, :3, 3].float()
    centres = -(R.transpose(1, 2) @ t[..., None])[..., 0]                       # (T, 3)
    dirs = torch.einsum("hwc,tcd->thwd", d_cam, R)                               # R^T d per view
    return centres, dirs


def world_points(depth: torch.Tensor, centres: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) world point of every pixel (non-finite where the depth is)."""
    return centres[:, None, None, :] + depth * dirs


def _pick(fwd: torch.Tensor, bwd: torch.Tensor) -> torch.Tensor:
    """Per pixel the shorter of two finite differences (the one that does not cross a depth edge)."""
    nf = torch.nan_to_num(fwd.norm(dim=-1), nan=float("inf"))
    nb = torch.nan_to_num(bwd.norm(dim=-1), nan=float("inf"))
    return torch.where((nf <= nb)[..., None], fwd, bwd)


def normals_from_points(P: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) unit normals of the surface through the world points (zero where undefined), not oriented."""
    pad = torch.full_like(P[:, :, :1], float("nan"))
    right = torch.cat([P[:, :, 1:], pad], dim=2) - P
    left = P - torch.cat([pad, P[:, :, :-1]], dim=2)
    padv = torch.full_like(P[:, :1], float("nan"))
    down = torch.cat([P[:, 1:], padv], dim=1) - P
    up = P - torch.cat([padv, P[:, :-1]], dim=1)
    n = torch.linalg.cross(_pick(right, left), _pick(down, up), dim=-1)
    n = torch.nan_to_num(n, nan=0.0, posinf=0.0, neginf=0.0)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def facing_camera(n: torch.Tensor, P: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Normals flipped where they point away from their camera (a scan mesh's faces may be either way)."""
    to_cam = torch.nan_to_num(centres[:, None, None, :] - P, nan=0.0, posinf=0.0, neginf=0.0)
    flip = (n * to_cam).sum(-1, keepdim=True) < 0
    return torch.where(flip, -n, n)


TABLE_TOL_M = 0.02   # a table pixel's world z is within this of the support plane ...
TABLE_MIN_UP = 0.9   # ... and its normal's z at least this (25 degrees from vertical)


def table_mask(P: torch.Tensor, n: torch.Tensor, scene: torch.Tensor, support_height: float,
               tol: float = TABLE_TOL_M, min_up: float = TABLE_MIN_UP) -> torch.Tensor:
    """(T, H, W) scene pixels on the support plane: world z within `tol` of it and the normal pointing up."""
    z = torch.nan_to_num(P[..., 2], nan=float("inf"), posinf=float("inf"), neginf=float("inf"))
    return scene & ((z - support_height).abs() <= tol) & (n[..., 2] >= min_up)
