"""Gaussian splat rasterization: one functional entry point over three backends (gsplat, Warp, PyTorch).

Semantics shared by every backend (those of 3DGS / gsplat):
  - projection: camera-space mean p = R x + t; Gaussians with p.z outside [near, far] are culled; the 2D
    covariance is J W Sigma W^T J^T + 0.3 I (EWA splatting, the Jacobian's x/z and y/z clamped to 1.3x the
    field of view as gsplat does); its inverse ("conic") is what the pixels evaluate.
  - extent: a Gaussian reaches the pixels where opacity * exp(-sigma) >= 1/255, i.e. sigma <= ln(255 o) (at most
    the 3.33-sigma ellipse of gsplat >= 1.5); its box radius per axis is ceil(sqrt(2 ln(255 o) * cov_ii)).
    Gaussians whose box misses the image, or with o <= 1/255, get radius 0 (not visible).
  - colour: SH evaluated per Gaussian from the camera centre direction, + 0.5, clamped at 0.
  - pixels (centres at (x + 0.5, y + 0.5)) composite visible Gaussians front to back by camera depth:
    sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with d = mean2d - pixel; alpha = min(0.99, o exp(-sigma));
    alpha < 1/255 (or sigma < 0) is skipped; a Gaussian that would bring the transmittance to <= 1e-4 ends the
    pixel and is itself not composited (as gsplat does).
  - outputs: image = sum w_i c_i + (1 - alpha) background; alpha = 1 - T_final; depth = sum w_i z_i / alpha
    (expected depth, gsplat's "ED").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RenderOutput:
    """What one rasterization returns; tensors on the inputs' device."""

    image: torch.Tensor  # (H, W, 3) colour, background composited
    depth: torch.Tensor  # (H, W, 1) expected camera depth (accumulated depth / alpha)
    alpha: torch.Tensor  # (H, W, 1) accumulated opacity
    radii: torch.Tensor  # (N,) int32 screen radius in pixels, 0 = not visible
    means2d: torch.Tensor  # (N, 2) projected centres in pixels (detached)


BACKENDS = ("auto", "warp", "torch", "gsplat")


def rasterize(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    sh: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    sh_degree: int | None = None,
    background: torch.Tensor | None = None,
    near: float = 0.01,
    far: float = 1e10,
    backend: str = "auto",
    means2d_grad_holder: torch.Tensor | None = None,
) -> RenderOutput:
    """Render N Gaussians into one camera; differentiable w.r.t. means, quats, scales, opacities and sh.

    means (N,3) world; quats (N,4) wxyz, need not be normalised; scales (N,3) and opacities (N,) activated;
    sh (N,K,3) coefficients, K = (d+1)^2; viewmat (4,4) world-to-camera (OpenCV); K (3,3) intrinsics.
    sh_degree: degree to evaluate (None = all given). background (3,) or None (black).
    means2d_grad_holder: optional zeros (N,2) tensor with requires_grad=True; after backward its .grad is the
    loss gradient w.r.t. the projected 2D means in pixels (for densification).
    backend: "auto" = gsplat on CUDA tensors when it imports, else "warp"; "torch" = slow dense reference.
    """
    n = means.shape[0]
    if sh.dim() != 3 or sh.shape[0] != n or sh.shape[2] != 3:
        raise ValueError(f"sh must be (N, K, 3), got {tuple(sh.shape)}")
    if opacities.shape != (n,):
        if opacities.numel() != n:
            raise ValueError(f"opacities must be (N,), got {tuple(opacities.shape)}")
        opacities = opacities.reshape(n)
    k_all = sh.shape[1]
    deg_all = int(round(k_all ** 0.5)) - 1
    if (deg_all + 1) ** 2 != k_all:
        raise ValueError(f"sh has {k_all} coefficients per channel, not a square number")
    deg = deg_all if sh_degree is None else int(sh_degree)
    if not 0 <= deg <= min(deg_all, 3):
        raise ValueError(f"sh_degree {deg} not available (sh holds degree {deg_all}, at most 3 supported)")
    backend = _choose_backend(backend, means)
    if background is None:
        background = torch.zeros(3, dtype=means.dtype, device=means.device)
    args = (means, quats, scales, opacities, sh, viewmat, K, int(width), int(height), deg, float(near), float(far))
    if backend == "gsplat":
        from scenes.rendering._raster_gsplat import rasterize_gsplat

        return rasterize_gsplat(*args, background, means2d_grad_holder)
    if backend == "torch":
        from scenes.rendering._raster_torch import render_torch

        color, accd, alpha, radii, means2d = render_torch(*args, means2d_grad_holder)
    else:
        from scenes.rendering._raster_warp import render_warp

        color, accd, alpha, radii, means2d = render_warp(*args, means2d_grad_holder)
    image = color + (1.0 - alpha) * background.to(color)
    depth = accd / alpha.clamp(min=1e-10)
    return RenderOutput(image=image, depth=depth, alpha=alpha, radii=radii, means2d=means2d.detach())


def _choose_backend(backend: str, means: torch.Tensor) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown rasterizer backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if means.is_cuda:
        try:
            import gsplat  # noqa: F401  (CUDA only, optional)

            return "gsplat"
        except ImportError:
            return "warp"
    return "warp"


def rasterize_reference(means, quats, scales, opacities, sh, viewmat, K, width: int, height: int, sh_degree: int,
                        near: float, far: float, pixel_ids: torch.Tensor | None = None):
    """The dense PyTorch oracle on a subset of pixels (flat ids), for tests and benchmarks of the fast kernels.

    Returns (color (P,3), depth-weighted alpha (P,1), alpha (P,1), radii, means2d) for those pixels.
    """
    from scenes.rendering._raster_torch import render_torch

    return render_torch(means, quats, scales, opacities, sh, viewmat, K, int(width), int(height), int(sh_degree),
                        float(near), float(far), pixel_ids=pixel_ids)
