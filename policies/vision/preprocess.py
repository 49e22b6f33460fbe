"""Camera frames -> backbone input, the same module at train, eval and deploy time (a torch module with buffers,
so it exports to ONNX with the policy): uint8 (..., H, W, 3) -> float (..., 3, S, S), bilinear resize to the model
size (square: other aspect ratios are stretched), ImageNet mean/std normalisation (what a torchvision-pretrained
backbone expects)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImagePreprocess(nn.Module):
    """(..., H, W, 3) uint8 (or float in [0, 1]) -> (..., 3, size, size) float32, ImageNet-normalised."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size
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
        x = (x - self.mean) / self.std
        return x.reshape(*lead, 3, self.size, self.size)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 3, S, S) model input -> (..., S, S, 3) float in [0, 1] (for showing what the policy sees)."""
        lead = x.shape[:-3]
        y = x.reshape(-1, 3, self.size, self.size) * self.std + self.mean
        return y.clamp(0, 1).permute(0, 2, 3, 1).reshape(*lead, self.size, self.size, 3)
