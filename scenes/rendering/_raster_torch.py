"""Dense pure-PyTorch Gaussian rasterizer: every Gaussian against every pixel. Slow; the test oracle for Warp.

Gradients come from autograd. Pixels are processed in chunks under activation checkpointing so memory stays
bounded (each chunk is recomputed during backward) and large scenes can still be checked, slowly.
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from twin_kit import quat_to_rotmat

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
EPS2D = 0.3


def sh_to_color(sh: torch.Tensor, dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Real SH (3DGS constants) of `degree` at unit `dirs` (N,3) -> colour (N,3), + 0.5 and clamped at 0."""
    c = SH_C0 * sh[:, 0]
    if degree > 0:
        x, y, z = (dirs[:, i:i + 1] for i in range(3))
        c = c - SH_C1 * y * sh[:, 1] + SH_C1 * z * sh[:, 2] - SH_C1 * x * sh[:, 3]
        if degree > 1:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            c = (c + SH_C2[0] * xy * sh[:, 4] + SH_C2[1] * yz * sh[:, 5] + SH_C2[2] * (2 * zz - xx - yy) * sh[:, 6]
                 + SH_C2[3] * xz * sh[:, 7] + SH_C2[4] * (xx - yy) * sh[:, 8])
            if degree > 2:
                c = (c + SH_C3[0] * y * (3 * xx - yy) * sh[:, 9] + SH_C3[1] * xy * z * sh[:, 10]
                     + SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
                     + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
                     + SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 13] + SH_C3[5] * z * (xx - yy) * sh[:, 14]
                     + SH_C3[6] * x * (xx - 3 * yy) * sh[:, 15])
    return torch.clamp_min(c + 0.5, 0.0)


def project(means, quats, scales, opacities, sh, viewmat, K, width, height, degree, near, far):
    """Per-Gaussian screen-space quantities (differentiable) and visibility: see scenes/rasterize.py."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    p = means @ R.T + t
    z_raw = p[:, 2]
    in_range = (z_raw >= near) & (z_raw <= far)
    z = torch.where(in_range, z_raw, torch.ones_like(z_raw))  # keeps NaNs out of culled Gaussians' gradients
    x, y = p[:, 0], p[:, 1]
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    lim_x = 0.3 * 0.5 * width / fx
    lim_y = 0.3 * 0.5 * height / fy
    tx = z * torch.clamp(x / z, -(cx / fx + lim_x), (width - cx) / fx + lim_x)
    ty = z * torch.clamp(y / z, -(cy / fy + lim_y), (height - cy) / fy + lim_y)
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * tx / (z * z), zero, fy / z, -fy * ty / (z * z)], dim=-1).reshape(-1, 2, 3)
    M = quat_to_rotmat(quats) * scales[:, None, :]
    T = J @ R @ M  # (N,2,3): cov2d = T T^T
    cov = T @ T.transpose(1, 2)
    a, b, c = cov[:, 0, 0] + EPS2D, cov[:, 0, 1], cov[:, 1, 1] + EPS2D
    det = a * c - b * b
    ok = in_range & (det > 0)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    with torch.no_grad():
        smax = torch.log(255.0 * opacities.clamp_min(1e-30))
        ok = ok & (smax > 0)
        ext2 = 2.0 * smax.clamp_min(0)
        rx = torch.ceil(torch.sqrt(ext2 * a.clamp_min(0)))
        ry = torch.ceil(torch.sqrt(ext2 * c.clamp_min(0)))
        mx, my = means2d[:, 0], means2d[:, 1]
        ok = ok & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.where(ok, torch.maximum(rx, ry), torch.zeros_like(rx)).to(torch.int32)
    campos = -R.T @ t
    dirs = means - campos
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    colors = sh_to_color(sh, dirs, degree)
    return dict(means2d=means2d, conics=conics, depths=z, colors=colors, opacities=opacities,
                radii=radii, visible=ok)


def _composite_chunk(pix, means2d, conics, opac, colors, depths):
    """Front-to-back compositing of depth-sorted Gaussians at pixel centres pix (P,2) -> (P,3), (P,1), (P,1)."""
    d = means2d[None, :, :] - pix[:, None, :]
    dx, dy = d[..., 0], d[..., 1]
    sigma = 0.5 * (conics[:, 0] * dx * dx + conics[:, 2] * dy * dy) + conics[:, 1] * dx * dy
    alpha = torch.clamp_max(opac * torch.exp(-sigma), ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    with torch.no_grad():  # the Gaussian that brings T to <= T_MIN, and all after it, are not composited
        keep = torch.cumprod(1.0 - alpha, dim=1) > T_MIN
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    trans = torch.cat([torch.ones_like(pix[:, :1]), torch.cumprod(1.0 - alpha, dim=1)], dim=1)
    w = alpha * trans[:, :-1]
    return w @ colors, (w @ depths)[:, None], 1.0 - trans[:, -1:]


def render_torch(means, quats, scales, opacities, sh, viewmat, K, width, height, degree, near, far,
                 means2d_grad_holder=None, pixel_ids: torch.Tensor | None = None, pixels_per_chunk: int | None = None):
    """Dense reference render -> colour without background (H,W,3), accumulated depth (H,W,1), alpha (H,W,1),
    radii (N,), means2d (N,2). With pixel_ids (P,) (flat row-major indices) only those pixels are rendered and
    the three images come back as (P,3), (P,1), (P,1)."""
    pr = project(means, quats, scales, opacities, sh, viewmat, K, width, height, degree, near, far)
    means2d = pr["means2d"]
    if means2d_grad_holder is not None:
        means2d = means2d + means2d_grad_holder
    idx = torch.nonzero(pr["visible"])[:, 0]
    idx = idx[torch.argsort(pr["depths"][idx], stable=True)]
    g = (means2d[idx], pr["conics"][idx], pr["opacities"][idx], pr["colors"][idx], pr["depths"][idx])
    full = pixel_ids is None
    if full:
        pixel_ids = torch.arange(width * height, device=means.device)
    pix = torch.stack([pixel_ids % width, pixel_ids // width], dim=-1).to(means.dtype) + 0.5
    n = max(int(idx.numel()), 1)
    step = pixels_per_chunk or max(16, (1 << 21) // n)
    outs = []
    grad = torch.is_grad_enabled()
    for s in range(0, pix.shape[0], step):
        if grad:
            outs.append(checkpoint(_composite_chunk, pix[s:s + step], *g, use_reentrant=False))
        else:
            outs.append(_composite_chunk(pix[s:s + step], *g))
    color, accd, alpha = (torch.cat(o, dim=0) for o in zip(*outs))
    if full:
        color, accd, alpha = (t.reshape(height, width, -1) for t in (color, accd, alpha))
    means2d_out = torch.where(pr["visible"][:, None], pr["means2d"], torch.zeros_like(pr["means2d"]))
    return color, accd, alpha, pr["radii"], means2d_out
