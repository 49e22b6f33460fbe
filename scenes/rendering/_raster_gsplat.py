"""CUDA backend: gsplat.rasterization (imported lazily, only for CUDA tensors), outputs mapped to RenderOutput.

gsplat's semantics are the ones Twin's Warp and PyTorch backends follow (16 px tiles, eps2d 0.3, "RGB+ED"
expected depth); small known differences: recent gsplat clamps alpha at 0.999 instead of 0.99.
"""
from __future__ import annotations

import torch


def rasterize_gsplat(means, quats, scales, opacities, sh, viewmat, K, width, height, degree, near, far,
                     background, means2d_grad_holder=None):
    import gsplat

    from scenes.rendering.rasterize import RenderOutput

    colors, alphas, meta = gsplat.rasterization(
        means, quats, scales, opacities, sh, viewmat[None], K[None], width, height,
        near_plane=near, far_plane=far, eps2d=0.3, sh_degree=degree, packed=False, tile_size=16,
        backgrounds=background[None], render_mode="RGB+ED", rasterize_mode="classic")
    means2d = meta["means2d"]
    if means2d_grad_holder is not None and means2d.requires_grad:
        holder = means2d_grad_holder

        def _to_holder(grad: torch.Tensor) -> None:
            g = grad[0].detach()
            holder.grad = g.clone() if holder.grad is None else holder.grad + g

        means2d.register_hook(_to_holder)
    radii = meta["radii"][0]
    if radii.dim() == 2:  # gsplat >= 1.5 gives per-axis radii
        radii = radii.amax(dim=-1)
    return RenderOutput(image=colors[0, ..., :3], depth=colors[0, ..., 3:4], alpha=alphas[0],
                        radii=radii.to(torch.int32), means2d=means2d[0].detach())
