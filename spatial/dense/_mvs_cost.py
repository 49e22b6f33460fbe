"""Plane-sweep depth for one reference view: warp sources per plane, ZNCC, robust aggregation, WTA.

Pure tensor code on (H, W) grey images in [0, 1]; the public driver is `spatial.mvs.estimate_depths`.
Coarse to fine: a full sweep at half resolution, then a short per-pixel sweep around it at full resolution,
which costs about a third of a full-resolution sweep.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from spatial.cameras import Camera

_INVALID = 3.0  # cost of a sample whose centre falls outside a source image (ZNCC costs live in [0, 2])
_OFFSET = 100.0  # added to source images so that a sample reading below it marks "outside the image"


def box(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k x k window of a (B, H, W) tensor, separable, border windows shrunk (no zero padding)."""
    if k <= 1:
        return x
    x = x.unsqueeze(1)
    x = F.avg_pool2d(x, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)
    x = F.avg_pool2d(x, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)
    return x.squeeze(1)


def window_stats(img: torch.Tensor, window: int, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """(local mean, 1 / local std) of a grey image (H, W) over a window."""
    m = box(img[None], window)[0]
    var = (box((img * img)[None], window)[0] - m * m).clamp_min(0)
    return m, torch.rsqrt(var + eps)


def _pixel_rays(cam: Camera) -> torch.Tensor:
    """K^-1 [u v 1]^T for every pixel of `cam`, shape (3, H*W), float64."""
    v, u = torch.meshgrid(torch.arange(cam.height, dtype=torch.float64),
                          torch.arange(cam.width, dtype=torch.float64), indexing="ij")
    return torch.stack([(u.reshape(-1) - cam.cx) / cam.fx, (v.reshape(-1) - cam.cy) / cam.fy,
                        torch.ones(cam.height * cam.width, dtype=torch.float64)])


def _grid_rows(ref: Camera, src: Camera, rays: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows turning inverse depth into grid_sample coordinates of the source image.

    A reference pixel with ray r = K_r^-1 [u v 1] at depth d lands in the source at K_s (R_rel r d + t_rel);
    with N = normalisation to [-1, 1] (pixel centres, align_corners=False) and inverse depth l = 1/d, the
    homogeneous grid point is a + l b where a = N K_s R_rel r (3, HW) and b = N K_s t_rel (3,).
    """
    R_rel = src.R @ ref.R.T
    t_rel = src.t - R_rel @ ref.t
    N = np.array([[2.0 / src.width, 0.0, 1.0 / src.width - 1.0],
                  [0.0, 2.0 / src.height, 1.0 / src.height - 1.0], [0.0, 0.0, 1.0]])
    M = N @ src.K
    a = (torch.from_numpy(M @ R_rel) @ rays).to(torch.float32)
    b = torch.from_numpy(M @ t_rel).to(torch.float32)
    return a, b


def warp(img: torch.Tensor, a: torch.Tensor, b: torch.Tensor, inv_depth: torch.Tensor, H: int, W: int
         ) -> torch.Tensor:
    """Sample a source image (Hs, Ws) at reference pixels for each inverse-depth hypothesis -> (D, H, W).

    inv_depth is (D, 1) for fronto-parallel planes or (D, H*W) for per-pixel hypotheses; samples outside
    the source image (or behind its camera) read 0.
    """
    D = inv_depth.shape[0]
    lam = inv_depth.to(torch.float32)
    z = (a[2][None] + lam * b[2]).clamp_min(1e-6)  # behind the camera -> far outside the image
    grid = torch.empty(1, D * H, W, 2)
    gv = grid.view(D, H * W, 2)
    torch.div(a[0][None] + lam * b[0], z, out=gv[..., 0])
    torch.div(a[1][None] + lam * b[1], z, out=gv[..., 1])
    grid.clamp_(-2.0, 2.0)
    out = F.grid_sample(img[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.view(D, H, W)


def _cost_one_source(src: torch.Tensor, ref: torch.Tensor, ref_mean: torch.Tensor, ref_istd: torch.Tensor,
                     a: torch.Tensor, b: torch.Tensor, inv_depth: torch.Tensor, window: int) -> torch.Tensor:
    """-ZNCC per hypothesis (D, H, W) against one source (already offset by _OFFSET); _INVALID where the
    window centre falls outside it."""
    s = warp(src, a, b, inv_depth, *ref.shape)
    inside = s > _OFFSET - 0.5
    s -= _OFFSET
    ms = box(s, window)
    istd_s = torch.rsqrt((box(s * s, window) - ms * ms).clamp_min_(0) + 1e-5)
    cov = box(s.mul_(ref), window) - ms * ref_mean
    ncc = (cov * istd_s * ref_istd).clamp_(-1.0, 1.0)
    return torch.where(inside, ncc.neg_(), _INVALID)


def cost_volume(ref: torch.Tensor, srcs: list[torch.Tensor], ref_cam: Camera, src_cams: list[Camera],
                inv_depth: torch.Tensor, window: int, best_k: int, chunk: int) -> torch.Tensor:
    """Aggregated matching cost 1 - ZNCC in [0, 2], (D, H, W): per hypothesis the mean of the best_k sources.

    Taking the lowest costs across sources tolerates occlusion in some of them; hypotheses that no source
    sees get cost 2 (worst match). inv_depth is (D, 1) or (D, H*W); work goes in chunks of hypotheses.
    """
    rays = _pixel_rays(ref_cam)
    ref_mean, ref_istd = window_stats(ref, window)
    prepared = [(s + _OFFSET, *_grid_rows(ref_cam, c, rays)) for s, c in zip(srcs, src_cams)]
    k = max(1, min(best_k, len(srcs)))
    out = []
    for d0 in range(0, inv_depth.shape[0], chunk):
        lam = inv_depth[d0:d0 + chunk]
        costs = torch.stack([_cost_one_source(s, ref, ref_mean, ref_istd, a, b, lam, window)
                             for s, a, b in prepared])
        best = torch.topk(costs, k, dim=0, largest=False).values if k < len(srcs) else costs
        ok = best < _INVALID - 0.5
        n = ok.sum(0)
        agg = torch.where(ok, best, 0.0).sum(0) / n.clamp_min(1)
        out.append(torch.where(n > 0, (1.0 + agg).clamp_(0.0, 2.0), 2.0))
    return torch.cat(out)


def guided_smooth(cost: torch.Tensor, guide: torch.Tensor, radius: int, eps: float = 1e-3) -> torch.Tensor:
    """Edge-preserving smoothing of each cost slice (D, H, W) by a grey guided filter (He et al.)."""
    if radius <= 0:
        return cost
    k = 2 * radius + 1
    mI = box(guide[None], k)[0]
    varI = (box((guide * guide)[None], k)[0] - mI * mI).clamp_min(0)
    mP = box(cost, k)
    a = (box(cost * guide, k) - mI * mP) / (varI + eps)
    b = mP - a * mI
    return box(a, k) * guide + box(b, k)


def winner_take_all(cost: torch.Tensor, inv_depth: torch.Tensor, step: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best hypothesis per pixel with parabola sub-step refinement in inverse depth.

    cost (D, H, W); inv_depth (D, 1) planes or (D, H*W) per pixel, uniformly `step` apart. Returns
    (inverse depth (H, W), best index (H, W), best cost (H, W), interior mask: best is not at either end).
    """
    D, H, W = cost.shape
    idx = cost.argmin(0, keepdim=True)
    im, ip = (idx - 1).clamp(0, D - 1), (idx + 1).clamp(0, D - 1)
    c0, cm, cp = cost.gather(0, idx)[0], cost.gather(0, im)[0], cost.gather(0, ip)[0]
    denom = cm - 2 * c0 + cp
    off = torch.where(denom > 1e-9, 0.5 * (cm - cp) / denom.clamp_min(1e-9), 0.0).clamp(-0.5, 0.5)
    lam = inv_depth.to(torch.float32).expand(D, H * W).reshape(D, H, W).gather(0, idx)[0]
    interior = (idx[0] > 0) & (idx[0] < D - 1)
    return lam + off * step, idx[0], c0, interior


def plane_confidence(cost: torch.Tensor, idx: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(-cost / temperature) probability mass of the best plane and its two neighbours (H, W)."""
    D = cost.shape[0]
    prob = torch.softmax(-cost / temperature, dim=0)
    i = idx[None]
    conf = prob.gather(0, i)[0]
    conf = conf + torch.where(i[0] > 0, prob.gather(0, (i - 1).clamp_min(0))[0], 0.0)
    conf = conf + torch.where(i[0] < D - 1, prob.gather(0, (i + 1).clamp_max(D - 1))[0], 0.0)
    return conf.clamp(0, 1)


@dataclass
class SweepParams:
    """The numeric knobs of one sweep (a subset of DepthConfig, kept here to avoid an import cycle)."""

    num_planes: int
    fine_planes: int
    fine_range: float
    window: int
    best_k: int
    smooth_radius: int
    temperature: float
    chunk: int


def _half(img: torch.Tensor, cam: Camera) -> tuple[torch.Tensor, Camera]:
    c = cam.scaled(0.5)
    return F.interpolate(img[None, None], size=(c.height, c.width), mode="area")[0, 0], c


def sweep_depth(ref: torch.Tensor, srcs: list[torch.Tensor], ref_cam: Camera, src_cams: list[Camera],
                near: float, far: float, p: SweepParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plane-sweep depth of one reference view: (depth, confidence, best cost), float32 (H, W) arrays.

    Coarse: num_planes fronto-parallel planes uniform in inverse depth between near and far, at half
    resolution, guided-filtered, winner-take-all. Fine (when fine_planes > 0): fine_planes per-pixel
    hypotheses spanning +-fine_range coarse plane steps around the upsampled coarse inverse depth.
    Depth is 0 where the best hypothesis sits at either end of its range (out of range or unreliable).
    """
    coarse = p.fine_planes > 0 and min(ref.shape) >= 32
    cref, ccam = _half(ref, ref_cam) if coarse else (ref, ref_cam)
    csrc = [_half(s, c) for s, c in zip(srcs, src_cams)] if coarse else list(zip(srcs, src_cams))
    planes = torch.linspace(1.0 / near, 1.0 / far, p.num_planes, dtype=torch.float64)[:, None]
    step = float(planes[1, 0] - planes[0, 0]) if p.num_planes > 1 else 0.0
    cost = cost_volume(cref, [s for s, _ in csrc], ccam, [c for _, c in csrc], planes, p.window, p.best_k,
                       p.chunk)
    cost = guided_smooth(cost, cref, p.smooth_radius)
    lam, idx, best, ok = winner_take_all(cost, planes, step)
    conf = plane_confidence(cost, idx, p.temperature)
    if coarse:
        H, W = ref.shape
        up = lambda x: F.interpolate(x[None, None].float(), size=(H, W), mode="bilinear", align_corners=False)[0, 0]
        lam0, conf, ok = up(lam), up(conf), up(ok) > 0.99
        fstep = 2 * p.fine_range * step / max(p.fine_planes - 1, 1)
        offs = (torch.arange(p.fine_planes, dtype=torch.float32) - (p.fine_planes - 1) / 2) * fstep
        hyp = lam0.reshape(1, -1) + offs[:, None]
        hyp = hyp.clamp_min(1e-9)
        fcost = cost_volume(ref, srcs, ref_cam, src_cams, hyp, p.window, p.best_k, p.chunk)
        lam, _, best, fok = winner_take_all(fcost, hyp, fstep)
        ok = ok & fok
    depth = torch.where(ok & (lam > 0), 1.0 / lam.clamp_min(1e-12), 0.0)
    return depth.numpy().astype(np.float32), conf.numpy().astype(np.float32), best.numpy().astype(np.float32)
