"""DPT head: four aggregator layers' patch tokens -> a dense map at full image resolution.

Each layer is normalised, projected by a 1x1 conv and resized to 4x, 2x, 1x and 1/2x of the patch grid;
fusion blocks merge them coarse to fine, and a last conv stack gives per-pixel outputs. Depth uses
`exp` (positive) and world points `inv_log` (sign * expm1|x|), both with a confidence `1 + exp(c)`.
The tracker reuses the same decoder with `feature_only` (a feature map at half resolution).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sincos_embed(pos: torch.Tensor, dim: int, omega_0: float = 100.0) -> torch.Tensor:
    """(N,) positions -> (N, dim): dim/2 sines then dim/2 cosines at geometric frequencies."""
    omega = 1.0 / omega_0 ** (torch.arange(dim // 2, dtype=torch.float64, device=pos.device) / (dim / 2.0))
    angles = torch.outer(pos.reshape(-1).double(), omega)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def uv_position_embedding(width: int, height: int, channels: int, aspect: float) -> torch.Tensor:
    """(channels, height, width) sin/cos embedding of a centred uv grid whose diagonal spans about 2."""
    diag = (aspect ** 2 + 1.0) ** 0.5
    span_x, span_y = aspect / diag, 1.0 / diag
    xs = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, width)
    ys = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height, height)
    vv, uu = torch.meshgrid(ys, xs, indexing="ij")
    emb = torch.cat([sincos_embed(uu, channels // 2), sincos_embed(vv, channels // 2)], dim=-1)
    return emb.reshape(height, width, channels).permute(2, 0, 1)


def add_position_embedding(x: torch.Tensor, image_w: int, image_h: int, ratio: float = 0.1) -> torch.Tensor:
    pe = uv_position_embedding(x.shape[-1], x.shape[-2], x.shape[1], image_w / image_h)
    return x + ratio * pe.to(device=x.device, dtype=x.dtype)[None]


def activate_dense(out: torch.Tensor, activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) raw -> values (N, H, W, C-1) and confidence (N, H, W) = 1 + exp(last channel)."""
    fmap = out.permute(0, 2, 3, 1)
    values, conf = fmap[..., :-1], fmap[..., -1]
    if activation == "exp":
        values = torch.exp(values)
    elif activation == "inv_log":
        values = torch.sign(values) * torch.expm1(values.abs())
    elif activation != "linear":
        raise ValueError(f"unknown dense activation {activation!r}")
    return values, 1 + conf.exp()


class ResidualConvUnit(nn.Module):
    """relu -> conv -> relu -> conv, added to relu(x) (VGGT's in-place ReLU also rectifies the skip)."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return x + self.conv2(F.relu(self.conv1(x)))


class FeatureFusionBlock(nn.Module):
    """Refine (and add a skip), upsample bilinearly to `size` (default 2x), mix with a 1x1 conv."""

    def __init__(self, features: int, has_residual: bool = True):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.has_residual = has_residual
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if self.has_residual and skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        size = tuple(size) if size is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    """Dense decoder over four layers of (B, S, P, dim_in) tokens (module names as VGGT's `DPTHead`)."""

    def __init__(self, dim_in: int, patch_size: int, layers: tuple[int, ...], channels: tuple[int, ...],
                 features: int, output_dim: int = 2, activation: str = "exp", head_hidden: int = 32,
                 pos_embed: bool = True, feature_only: bool = False, down_ratio: int = 1,
                 frames_chunk: int = 8):
        super().__init__()
        self.patch_size = patch_size
        self.layers = tuple(layers)
        self.activation = activation
        self.pos_embed = pos_embed
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        self.frames_chunk = frames_chunk
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, c, 1) for c in channels)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(channels[0], channels[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(channels[1], channels[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(channels[3], channels[3], kernel_size=3, stride=2, padding=1),
        ])
        scratch = nn.Module()
        for i, c in enumerate(channels, start=1):
            setattr(scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        scratch.refinenet1 = FeatureFusionBlock(features)
        scratch.refinenet2 = FeatureFusionBlock(features)
        scratch.refinenet3 = FeatureFusionBlock(features)
        scratch.refinenet4 = FeatureFusionBlock(features, has_residual=False)
        if feature_only:
            scratch.output_conv1 = nn.Conv2d(features, features, 3, padding=1)
        else:
            scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
            scratch.output_conv2 = nn.Sequential(
                nn.Conv2d(features // 2, head_hidden, 3, padding=1), nn.ReLU(),
                nn.Conv2d(head_hidden, output_dim, 1))
        self.scratch = scratch

    def forward(self, tokens: list[torch.Tensor | None], image_hw: tuple[int, int], patch_start_idx: int):
        """-> (values (B, S, H, W, C), confidence (B, S, H, W)), or features (B, S, F, H/d, W/d)."""
        B, S = next(t for t in tokens if t is not None).shape[:2]
        chunk = self.frames_chunk if self.frames_chunk and self.frames_chunk < S else S
        parts = [self._decode(tokens, image_hw, patch_start_idx, s, min(s + chunk, S)) for s in range(0, S, chunk)]
        if self.feature_only:
            return torch.cat(parts, dim=1)
        return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)

    def _decode(self, tokens, image_hw, patch_start_idx, s0, s1):
        H, W = image_hw
        rows, cols = H // self.patch_size, W // self.patch_size
        feats = []
        for k, layer in enumerate(self.layers):
            x = tokens[layer][:, s0:s1, patch_start_idx:]
            B, S = x.shape[:2]
            x = self.norm(x.reshape(B * S, rows * cols, -1))
            x = self.projects[k](x.transpose(1, 2).reshape(B * S, -1, rows, cols))
            if self.pos_embed:
                x = add_position_embedding(x, W, H)
            feats.append(self.resize_layers[k](x))
        sc = self.scratch
        l1, l2, l3, l4 = (getattr(sc, f"layer{i}_rn")(f) for i, f in enumerate(feats, start=1))
        out = sc.refinenet4(l4, size=l3.shape[2:])
        out = sc.refinenet3(out, l3, size=l2.shape[2:])
        out = sc.refinenet2(out, l2, size=l1.shape[2:])
        out = sc.refinenet1(out, l1)
        out = sc.output_conv1(out)
        size = (int(rows * self.patch_size / self.down_ratio), int(cols * self.patch_size / self.down_ratio))
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
        if self.pos_embed:
            out = add_position_embedding(out, W, H)
        if self.feature_only:
            return out.reshape(B, S, *out.shape[1:])
        values, conf = activate_dense(sc.output_conv2(out), self.activation)
        return values.reshape(B, S, *values.shape[1:]), conf.reshape(B, S, *conf.shape[1:])
