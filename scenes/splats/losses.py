"""Photometric losses and image metrics for splat training: L1, SSIM (11x11 Gaussian window), PSNR."""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=8)
def _gauss_1d(size: int, sigma: float, device: str, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return (g / g.sum()).to(device=device, dtype=dtype)


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B,C,H,W) with zero padding (as the 3DGS reference does)."""
    c = x.shape[1]
    p = g.numel() // 2
    x = x.contiguous(memory_format=torch.channels_last)  # depthwise convs are several times faster so on CPU
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, p), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(p, 0), groups=c)


def ssim(img: torch.Tensor, ref: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of two (H,W,C) or (B,H,W,C) images in [0,1]."""
    if img.dim() == 3:
        img, ref = img[None], ref[None]
    x = img.permute(0, 3, 1, 2)
    y = ref.permute(0, 3, 1, 2)
    g = _gauss_1d(window, sigma, str(x.device), x.dtype)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    # one grouped blur of all five moment maps (much faster on the CPU than five separate calls)
    mx, my, exx, eyy, exy = _blur(torch.cat([x, y, x * x, y * y, x * y], 1), g).contiguous().chunk(5, 1)
    sxx, syy, sxy = exx - mx * mx, eyy - my * my, exy - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


def psnr(img: torch.Tensor, ref: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0,1]."""
    mse = float(torch.mean((img.detach().clamp(0, 1) - ref) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def photometric_loss(img: torch.Tensor, ref: torch.Tensor, ssim_lambda: float = 0.2) -> torch.Tensor:
    """3DGS training loss: (1 - lambda) * L1 + lambda * (1 - SSIM)."""
    l1 = (img - ref).abs().mean()
    if ssim_lambda <= 0:
        return l1
    return (1 - ssim_lambda) * l1 + ssim_lambda * (1 - ssim(img, ref))
