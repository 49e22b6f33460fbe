"""Camera geometry of the network's outputs, batched in torch.

Pose encoding (VGGT's "absT_quaR_FoV"): [tx, ty, tz, qx, qy, qz, qw, fov_h, fov_w] where (R, t) is the
world-to-camera OpenCV pose (x_cam = R x_world + t), the quaternion is R's in XYZW order, and the fields of
view are full angles in radians. Intrinsics built from it put the principal point at (W/2, H/2).
Pixel coordinates: column u and row v, pixel centres at integers (as the network was trained).
"""
from __future__ import annotations

import torch


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions XYZW with w >= 0 (numerically safe branch per input)."""
    m = R.reshape(*R.shape[:-2], 9).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    # s_k = 2 * |component k| from the diagonal; pick the largest to divide by
    s = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22],
                    dim=-1).clamp(min=0).sqrt()
    # candidates in (x, y, z, w) order, each scaled by its s (so dividing by 2 s_k gives the quaternion)
    cand = torch.stack([
        torch.stack([m21 - m12, m02 - m20, m10 - m01, s[..., 0] ** 2], dim=-1),   # from w
        torch.stack([s[..., 1] ** 2, m01 + m10, m02 + m20, m21 - m12], dim=-1),   # from x
        torch.stack([m01 + m10, s[..., 2] ** 2, m12 + m21, m02 - m20], dim=-1),   # from y
        torch.stack([m02 + m20, m12 + m21, s[..., 3] ** 2, m10 - m01], dim=-1),   # from z
    ], dim=-2) / (2 * s.clamp(min=0.1))[..., None]
    best = s.argmax(dim=-1)
    q = torch.gather(cand, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., 3:] < 0, -q, q)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions XYZW (any norm) -> (..., 3, 3) rotations."""
    x, y, z, w = q.unbind(-1)
    two_s = 2.0 / (q * q).sum(-1)
    R = torch.stack([
        1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
        two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
        two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
    ], dim=-1)
    return R.reshape(*q.shape[:-1], 3, 3)


def encode_pose(extrinsics: torch.Tensor, intrinsics: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """World-to-camera (..., 3, 4) or (..., 4, 4) and intrinsics (..., 3, 3) -> (..., 9) pose encoding."""
    H, W = image_hw
    R, t = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
    fov_h = 2 * torch.atan((H / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((W / 2) / intrinsics[..., 0, 0])
    return torch.cat([t, matrix_to_quaternion(R), fov_h[..., None], fov_w[..., None]], dim=-1).float()


def decode_pose(encoding: torch.Tensor, image_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 9) pose encoding -> world-to-camera extrinsics (..., 3, 4) and intrinsics (..., 3, 3)."""
    H, W = image_hw
    t, q, fov_h, fov_w = encoding[..., :3], encoding[..., 3:7], encoding[..., 7], encoding[..., 8]
    extrinsics = torch.cat([quaternion_to_matrix(q), t[..., None]], dim=-1)
    K = torch.zeros(*encoding.shape[:-1], 3, 3, dtype=encoding.dtype, device=encoding.device)
    K[..., 0, 0] = (W / 2) / torch.tan(fov_w / 2)
    K[..., 1, 1] = (H / 2) / torch.tan(fov_h / 2)
    K[..., 0, 2] = W / 2
    K[..., 1, 2] = H / 2
    K[..., 2, 2] = 1
    return extrinsics, K


def invert_pose(extrinsics: torch.Tensor) -> torch.Tensor:
    """(..., 3, 4) or (..., 4, 4) rigid transform -> its inverse as (..., 4, 4)."""
    R, t = extrinsics[..., :3, :3], extrinsics[..., :3, 3:]
    out = torch.zeros(*extrinsics.shape[:-2], 4, 4, dtype=extrinsics.dtype, device=extrinsics.device)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3:] = -R.transpose(-1, -2) @ t
    out[..., 3, 3] = 1
    return out


def unproject_depth(depth: torch.Tensor, extrinsics: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Depth (..., H, W) or (..., H, W, 1), world-to-camera (..., 3|4, 4), K (..., 3, 3) -> world (..., H, W, 3).

    Depth is along the optical axis (z), not along the ray; pixel (u, v) sees the ray K^-1 [u, v, 1].
    """
    if depth.shape[-1] == 1 and depth.ndim >= 3 and depth.ndim == extrinsics.ndim + 1:
        depth = depth[..., 0]
    H, W = depth.shape[-2:]
    v, u = torch.meshgrid(torch.arange(H, dtype=depth.dtype, device=depth.device),
                          torch.arange(W, dtype=depth.dtype, device=depth.device), indexing="ij")
    K = intrinsics.to(depth.dtype)[..., None, None, :, :]
    fx, fy, cx, cy = K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2]
    cam = torch.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], dim=-1)
    c2w = invert_pose(extrinsics.to(depth.dtype))[..., None, None, :, :]
    return (c2w[..., :3, :3] @ cam[..., None]).squeeze(-1) + c2w[..., :3, 3]
