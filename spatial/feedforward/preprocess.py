"""Images -> the network's input, as VGGT prepares them, and the map back to the original pixels.

Modes (target 518 px, both sides multiples of the 14 px patch, bicubic resampling as PIL does it):
  crop  width 518, height in proportion; a taller result is centre-cropped to 518 (VGGT's default)
  pad   longest side 518, the other in proportion, then padded with white to 518 x 518
  fit   longest side 518, the other in proportion; nothing cut or added (the whole frame, for a bundle)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

Mode = Literal["crop", "pad", "fit"]


@dataclass(frozen=True)
class Framing:
    """Where a network image sits in its source image: network pixel (u, v) (centres at integers) shows the
    source point ((u + ox + 0.5) / sx - 0.5, (v + oy + 0.5) / sy - 0.5)."""

    sx: float
    sy: float
    ox: float   # network pixel 0 is resized pixel ox (crop: > 0, pad: < 0)
    oy: float
    size: tuple[int, int]          # network image (width, height)
    source_size: tuple[int, int]   # source image (width, height)

    def to_source_intrinsics(self, fx: float, fy: float, cx: float, cy: float) -> tuple[float, float, float, float]:
        """Pinhole intrinsics in network pixels -> the same camera in source pixels."""
        return (fx / self.sx, fy / self.sy, (cx + self.ox + 0.5) / self.sx - 0.5,
                (cy + self.oy + 0.5) / self.sy - 0.5)


def _round14(x: float, patch: int) -> int:
    return max(patch, int(round(x / patch)) * patch)


def network_size(width: int, height: int, mode: Mode = "crop", target: int = 518, patch: int = 14
                 ) -> tuple[int, int]:
    """(width, height) an image is resized to before any crop or pad."""
    if mode == "crop" or (mode in ("pad", "fit") and width >= height):
        return target, _round14(height * target / width, patch)
    return _round14(width * target / height, patch), target


def prepare_image(image: np.ndarray, mode: Mode = "crop", target: int = 518, patch: int = 14
                  ) -> tuple[torch.Tensor, Framing]:
    """(H, W, 3) uint8 RGB -> (3, h, w) float in [0, 1] and its Framing."""
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError("expected an (H, W, 3) uint8 RGB image")
    H, W = image.shape[:2]
    w, h = network_size(W, H, mode, target, patch)
    resized = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC))
    x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float() / 255.0
    ox = oy = 0
    if mode == "crop" and h > target:
        oy = (h - target) // 2
        x = x[:, oy:oy + target]
    elif mode == "pad":
        pad_w, pad_h = target - w, target - h
        ox, oy = -(pad_w // 2), -(pad_h // 2)
        x = torch.nn.functional.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=1.0)
    return x, Framing(w / W, h / H, ox, oy, (x.shape[2], x.shape[1]), (W, H))


def prepare_images(images: list[np.ndarray], mode: Mode = "crop", target: int = 518, patch: int = 14
                   ) -> tuple[torch.Tensor, list[Framing]]:
    """A sequence of images -> (S, 3, h, w) in [0, 1]; images of different shapes are padded (white) to the
    largest, centred, as VGGT does, and their framings account for it."""
    if not images:
        raise ValueError("no images")
    prepared = [prepare_image(im, mode, target, patch) for im in images]
    h = max(x.shape[1] for x, _ in prepared)
    w = max(x.shape[2] for x, _ in prepared)
    out, framings = [], []
    for x, f in prepared:
        dh, dw = h - x.shape[1], w - x.shape[2]
        if dh or dw:
            x = torch.nn.functional.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), value=1.0)
            f = Framing(f.sx, f.sy, f.ox - dw // 2, f.oy - dh // 2, (w, h), f.source_size)
        out.append(x)
        framings.append(f)
    return torch.stack(out), framings
