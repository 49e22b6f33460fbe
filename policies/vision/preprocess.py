"""Camera frames -> backbone input, the same module at train, eval and deploy time (a torch module with buffers,
so it exports to ONNX with the policy): uint8 (..., H, W, 3) -> float (..., 3, S, S), bilinear resize to the model
size (square: other aspect ratios are stretched), then ImageNet mean/std normalisation (what a pretrained backbone
expects) or, with `per_image`, each image's channels standardised by their own mean and spread, which takes out
a global change of exposure, white balance or light colour before the backbone sees the frame."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from policies.configuration import IMAGE_NORMS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPREAD_FLOOR = 0.02  # a channel flatter than this (in [0, 1] units) is not stretched up to unit spread
SHOWN_SPREAD = 0.22  # per_image inputs are shown at about a photo's contrast


class ImagePreprocess(nn.Module):
    """(..., H, W, 3) uint8 (or float in [0, 1]) -> (..., 3, size, size) float32, normalised per `norm`
    (IMAGE_NORMS)."""

    def __init__(self, size: int, norm: str = "imagenet"):
        super().__init__()
        if norm not in IMAGE_NORMS:
            raise ValueError(f"image norm {norm!r} is not one of {', '.join(IMAGE_NORMS)}")
        self.size, self.norm = size, norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if images.dtype == torch.uint8:
            x = x / 255.0
        lead, (h, w) = x.shape[:-3], x.shape[-3:-1]
        x = x.reshape(-1, h, w, 3).permute(0, 3, 1, 2)
        if (h, w) != (self.size, self.size):  # shapes are fixed per model, so this is no data-dependent branch
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.norm == "per_image":
            m = x.mean(dim=(2, 3), keepdim=True)
            spread = (x - m).square().mean(dim=(2, 3), keepdim=True).sqrt().clamp_min(SPREAD_FLOOR)
            x = (x - m) / spread
        else:
            x = (x - self.mean) / self.std
        return x.reshape(*lead, 3, self.size, self.size)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 3, S, S) model input -> (..., S, S, 3) float in [0, 1] (for showing what the policy sees)."""
        lead = x.shape[:-3]
        y = x.reshape(-1, 3, self.size, self.size)
        y = y * SHOWN_SPREAD + 0.5 if self.norm == "per_image" else y * self.std + self.mean
        return y.clamp(0, 1).permute(0, 2, 3, 1).reshape(*lead, self.size, self.size, 3)
