"""Training-time augmentation of a batch's camera frames, applied to the raw uint8 frames before the preprocessor:

- `shift`: each frame moves by a random whole-pixel offset of up to `shift` of its side, its border pixels
  repeated into the uncovered edge (DrQ's pad-and-crop; Diffusion Policy's random crop plays the same role). A
  policy learning from a few hundred demos otherwise memorises pixel positions.
- `color`: random brightness, contrast, saturation and hue per frame (torchvision's ColorJitter ranges).
- `randconv`: half the frames pass through a freshly drawn random convolution (a 3 -> 3 channel kernel of side 1, 3
  or 5, Gaussian weights), rescaled to the frame's own mean and spread and blended with it by a random weight
  (RandConv, Xu et al. 2021; network randomisation, Lee et al. 2020): colours and local texture change, shapes
  stay, so the encoder is pushed towards shape. On push it cost the restyled policy more vanilla success than it
  gave back held-out (sim2real_augment.json); kept as an option, off by default.
- `sensor`: what a different camera adds to the same picture, each part drawn per frame with probability
  `sensor_probability`: a Gaussian blur (defocus, sigma up to `blur_px`), Gaussian pixel noise (std up to
  `noise_std` of full scale) and a white-balance error (red and blue gains log-uniform within `wb_gain` either
  way). Rendered demos are sharp, clean and neutral; real sensors are not.

Offsets and factors come from the training RNG (torch's), which checkpoints save, so a resumed run draws the very
augmentations an uninterrupted one would. Evaluation and deployment never augment.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from policies.features import IMAGE_PREFIX, TWIN
from policies.train.config import TrainConfig


@dataclass(frozen=True)
class Augment:
    """Which augmentations run and how strong: shift (fraction of the side), color jitter ranges."""

    kinds: tuple[str, ...] = ()
    shift: float = 0.06
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    randconv_probability: float = 0.5
    randconv_kernels: tuple[int, ...] = (1, 3, 5)
    sensor_probability: float = 0.5
    blur_px: float = 2.0
    noise_std: float = 0.05
    wb_gain: float = 1.25

    def __bool__(self) -> bool:
        return bool(self.kinds)


def augment_of(cfg: TrainConfig) -> Augment:
    """The augmentation a training config asks for (--augment, --shift)."""
    return Augment(kinds=cfg.augmentation(), shift=cfg.shift)


def random_shift(frames: torch.Tensor, fraction: float, twin: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, W, C) frames each moved by a uniform random offset in [-p, p] pixels per axis (p = fraction of the
    side, at least 1), edges repeated: one gather, uint8 in and out. A sample with a `twin` (>= 0) moves by its
    twin's offset, so a restyled frame and its original stay aligned for the consistency loss."""
    b, h, w = frames.shape[:3]
    pad_h, pad_w = max(1, round(fraction * h)), max(1, round(fraction * w))
    dev = frames.device
    dy = torch.randint(-pad_h, pad_h + 1, (b, 1), device="cpu")
    dx = torch.randint(-pad_w, pad_w + 1, (b, 1), device="cpu")
    if twin is not None:
        src = twin.to("cpu")
        src = torch.where(src >= 0, src, torch.arange(b))
        dy, dx = dy[src], dx[src]
    dy, dx = dy.to(dev), dx.to(dev)
    rows = (torch.arange(h, device=dev)[None] + dy).clamp_(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=dev)[None] + dx).clamp_(0, w - 1)  # (B, W)
    batch = torch.arange(b, device=dev)[:, None, None]
    return frames[batch, rows[:, :, None], cols[:, None, :]]


def _uniform(n: int, spread: float, device) -> torch.Tensor:
    return (1.0 + (torch.rand(n, device="cpu") * 2 - 1) * spread).to(device)


def _to_unit(frames: torch.Tensor) -> torch.Tensor:
    return frames.float() / 255.0


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


_GREY = (0.299, 0.587, 0.114)


def _jitter(x: torch.Tensor, aug: Augment) -> torch.Tensor:
    """Colour jitter of (B, H, W, 3) frames in [0, 1], left unclamped for the next step."""
    b = x.shape[0]
    dev = x.device
    grey_weights = torch.tensor(_GREY, device=dev)
    x = x * _uniform(b, aug.brightness, dev)[:, None, None, None]
    mean = (x * grey_weights).sum(-1, keepdim=True).mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * _uniform(b, aug.contrast, dev)[:, None, None, None] + mean
    grey = (x * grey_weights).sum(-1, keepdim=True)
    x = (x - grey) * _uniform(b, aug.saturation, dev)[:, None, None, None] + grey
    if aug.hue > 0:  # rotate chroma about the grey axis (YIQ): hue in turns
        angle = ((torch.rand(b, device="cpu") * 2 - 1) * aug.hue * 2 * torch.pi).to(dev)
        to_yiq = torch.tensor([_GREY, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=dev)
        yiq = x @ to_yiq.T
        c, s = angle.cos()[:, None, None], angle.sin()[:, None, None]
        i, q = yiq[..., 1], yiq[..., 2]
        yiq = torch.stack([yiq[..., 0], c * i - s * q, s * i + c * q], dim=-1)
        x = yiq @ torch.linalg.inv(to_yiq).T
    return x


def _randconv(frames: torch.Tensor, aug: Augment) -> torch.Tensor:
    """Random convolution of (B, H, W, 3) frames in [0, 1] (see random_conv)."""
    b, h, w, c = frames.shape
    dev = frames.device
    side = aug.randconv_kernels[int(torch.randint(len(aug.randconv_kernels), (1,)))]
    weight = torch.randn(b * c, c, side, side, device="cpu")  # any scale: the output is standardised below
    chosen = torch.rand(b, device="cpu") < aug.randconv_probability
    keep = torch.rand(b, device="cpu")  # the original's share of the blend
    x = frames.permute(0, 3, 1, 2)  # (B, C, H, W)
    stacked = x.reshape(1, b * c, h, w)  # one image of B x C channels: frame i's kernel sees only frame i
    if side > 1:
        stacked = F.pad(stacked, [side // 2] * 4, mode="reflect")
    y = F.conv2d(stacked, weight.to(dev), groups=b).reshape(b, c, h, w)
    mean, std = x.mean(dim=(1, 2, 3), keepdim=True), x.std(dim=(1, 2, 3), keepdim=True)
    y = (y - y.mean(dim=(1, 2, 3), keepdim=True)) / (y.std(dim=(1, 2, 3), keepdim=True) + 1e-6) * std + mean
    k = keep.to(dev)[:, None, None, None]
    out = torch.where(chosen.to(dev)[:, None, None, None], k * x + (1 - k) * y, x)
    return out.permute(0, 2, 3, 1)


def _gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, 2 radius + 1) normalised 1-D Gaussian kernels (sigma > 0)."""
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (taps[None] / sigma[:, None]) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def _sensor(x: torch.Tensor, aug: Augment) -> torch.Tensor:
    """Blur, white balance and noise of (B, H, W, 3) frames in [0, 1] (see sensor_effects)."""
    b, h, w, c = x.shape
    dev = x.device
    p = aug.sensor_probability

    def drawn(hi: float) -> torch.Tensor:  # per frame: U(0, hi) where chosen, else 0
        return torch.where(torch.rand(b) < p, torch.rand(b) * hi, torch.zeros(b))

    sigma = drawn(aug.blur_px)
    blurred = (sigma > 0).nonzero().flatten()   # only these frames are convolved
    if aug.blur_px > 0 and len(blurred):
        n = len(blurred)
        radius = min(max(1, math.ceil(3 * aug.blur_px)), (min(h, w) - 1) // 2)
        k = _gaussian_kernels(sigma[blurred], radius).to(dev)
        idx = blurred.to(dev)
        y = x[idx].permute(0, 3, 1, 2).reshape(1, n * c, h, w)  # frame i's channels see only frame i's kernel
        rows = k.repeat_interleave(c, dim=0)[:, None, :, None]  # (n C, 1, K, 1)
        y = F.conv2d(F.pad(y, [0, 0, radius, radius], mode="reflect"), rows, groups=n * c)
        y = F.conv2d(F.pad(y, [radius, radius, 0, 0], mode="reflect"), rows.transpose(2, 3), groups=n * c)
        x = x.index_copy(0, idx, y.reshape(n, c, h, w).permute(0, 2, 3, 1))
    if aug.wb_gain > 1:
        span = math.log(aug.wb_gain)
        chosen = (torch.rand(b) < p).float()[:, None]
        log_gain = (torch.rand(b, 2) * 2 - 1) * span * chosen  # red and blue; green is the reference
        gains = torch.stack([log_gain[:, 0].exp(), torch.ones(b), log_gain[:, 1].exp()], dim=1)
        x = x * gains.to(dev)[:, None, None, :]
    std = drawn(aug.noise_std)
    if bool((std > 0).any()):
        x = x + torch.randn(x.shape).to(dev) * std.to(dev)[:, None, None, None]
    return x


def sensor_effects(frames: torch.Tensor, aug: Augment) -> torch.Tensor:
    """(B, H, W, 3) uint8 frames, each blurred, white-balanced and noised by its own random amounts (every part
    with probability `sensor_probability`; a frame that draws none is returned unchanged)."""
    return _to_uint8(_sensor(_to_unit(frames), aug))


def color_jitter(frames: torch.Tensor, aug: Augment) -> torch.Tensor:
    """(B, H, W, 3) uint8 frames with a random brightness, contrast and saturation factor and hue rotation each."""
    return _to_uint8(_jitter(_to_unit(frames), aug))


def random_conv(frames: torch.Tensor, aug: Augment) -> torch.Tensor:
    """(B, H, W, 3) uint8 frames, each chosen one (probability `randconv_probability`) filtered by its own random
    Gaussian kernel (one side per batch), matched to its original's per-frame mean and standard deviation, then
    blended with the original by a uniform weight. One grouped convolution for the whole batch."""
    return _to_uint8(_randconv(_to_unit(frames), aug))


def augment_batch(batch: dict[str, torch.Tensor], aug: Augment) -> dict[str, torch.Tensor]:
    """The batch with every camera's (B, H, W, 3) uint8 frames augmented (each camera drawn independently)."""
    if not aug:
        return batch
    out = dict(batch)
    for key, frames in batch.items():
        if not key.startswith(IMAGE_PREFIX):
            continue
        if "shift" in aug.kinds:
            frames = random_shift(frames, aug.shift, batch.get(TWIN))
        steps = [step for kind, step in (("randconv", _randconv), ("color", _jitter), ("sensor", _sensor))
                 if kind in aug.kinds]
        if steps:  # appearance in floats, quantised once
            x = _to_unit(frames)
            for step in steps:
                x = step(x, aug)
            frames = _to_uint8(x)
        out[key] = frames
    return out
