"""Camera images -> transformer tokens, shared by ACT and the flow policy.

One backbone (ResNet-18, or MobileNetV2 for ImageNet features) runs over every camera (shared weights, as in
ACT); a 1x1 convolution projects its feature map to the model width; each feature-map cell becomes a token whose
position is a fixed 2D sine embedding (DETR's, which ACT uses) plus a learned per-camera embedding, so the model
can tell the cameras apart.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from policies.configuration import PACKAGED_WEIGHTS
from policies.features import TWIN
from policies.vision.mobilenet import MobileNetV2, load_mobilenet_weights, packaged_mobilenet_weights
from policies.vision.resnet import ResNet, feature_size, load_resnet_weights
from twin_kit import InputError


def sinusoidal_2d(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(h * w, dim) fixed position embedding of an h x w grid: half the channels encode the row, half the column,
    each as sin/cos pairs of geometrically spaced frequencies over cell centres scaled to [0, 2*pi]."""
    if dim % 4:
        raise InputError(f"model width {dim} must be a multiple of 4 (2D sine position embedding)")
    quarter = dim // 4
    freqs = temperature ** (-torch.arange(quarter, dtype=torch.float64) / quarter)

    def axis(n: int) -> torch.Tensor:
        pos = (torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 * math.pi
        angles = pos[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (n, dim / 2)

    rows = axis(h)[:, None].expand(h, w, dim // 2)
    cols = axis(w)[None, :].expand(h, w, dim // 2)
    return torch.cat([rows, cols], dim=-1).reshape(h * w, dim).float()


class ImageEncoder(nn.Module):
    """(B, N, 3, S, S) preprocessed images of N cameras -> tokens (B, N * h * w, dim) and positions (N * h * w, dim).

    Positions are returned apart from the tokens: ACT adds them to queries and keys in every attention layer,
    the flow policy adds them once to its prefix. `frozen` fixes the backbone's first blocks (-1: all of them, a
    pretrained feature extractor whose backward pass training skips): no gradients, batch norms in inference mode.
    """

    def __init__(self, n_cameras: int, dim: int, image_size: int, width: float = 1.0, layers: int = 4,
                 frozen_bn: bool = False, weights: str | Path | None = None, norm: str = "batch",
                 backbone: str = "resnet18", frozen: int = 0):
        super().__init__()
        if backbone == "mobilenet_v2":
            self.backbone = MobileNetV2(width=width, layers=layers, frozen_bn=frozen_bn, norm=norm)
            if weights:
                load_mobilenet_weights(self.backbone, packaged_mobilenet_weights() if weights == PACKAGED_WEIGHTS
                                       else weights)
        else:
            self.backbone = ResNet(width=width, layers=layers, frozen_bn=frozen_bn, norm=norm)
            if weights:
                load_resnet_weights(self.backbone, weights)
        self.backbone.freeze_blocks(frozen)
        self.proj = nn.Conv2d(self.backbone.out_channels, dim, 1)
        self.n_cameras, self.dim = n_cameras, dim
        self.grid = feature_size(image_size, layers)
        self.register_buffer("grid_pos", sinusoidal_2d(self.grid, self.grid, dim), persistent=False)
        self.camera_embed = nn.Parameter(torch.zeros(n_cameras, dim))
        nn.init.normal_(self.camera_embed, std=0.02)

    @property
    def tokens_per_camera(self) -> int:
        return self.grid * self.grid

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n = images.shape[:2]
        f = self.proj(self.backbone(images.flatten(0, 1)))  # (B * N, dim, h, w)
        tokens = f.flatten(2).transpose(1, 2).reshape(b, n * self.tokens_per_camera, self.dim)
        pos = (self.grid_pos[None] + self.camera_embed[:, None]).reshape(n * self.tokens_per_camera, self.dim)
        return tokens, pos


def consistency_loss(tokens: torch.Tensor, twin: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the image tokens (B, L, dim) of each sample with a twin (`twin` >= 0, its
    position in the batch) and its twin's, each token layer-normed (so the loss cannot shrink by scaling features
    down); the twin's side is held fixed: the original appearance is the target, restyled views move to it."""
    rows = torch.nonzero(twin >= 0).squeeze(1)
    shape = tokens.shape[-1:]
    moved = F.layer_norm(tokens[rows].float(), shape)
    target = F.layer_norm(tokens[twin[rows]].float(), shape).detach()
    return F.mse_loss(moved, target)


def paired_consistency(tokens: torch.Tensor | None, batch: dict[str, torch.Tensor], weight: float,
                       training: bool) -> torch.Tensor | None:
    """The consistency loss of a training batch that carries pairs (`train.twin`) when the policy asks for it
    (weight > 0), else None: the one condition both policies apply."""
    if weight <= 0 or not training or tokens is None or TWIN not in batch:
        return None
    return consistency_loss(tokens, batch[TWIN])
