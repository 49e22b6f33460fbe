"""DINOv2-style ViT with registers (ViT-L/14 for VGGT-1B): images -> normalised patch tokens.

It keeps DINOv2's parameters (class token, 4 register tokens, learned position grid, mask token) so the
checkpoint loads; the position grid is resized bicubically (antialiased) to each input's patch grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spatial.feedforward.layers import Block


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: one strided convolution."""

    def __init__(self, patch_size: int, dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoBackbone(nn.Module):
    """Token order inside: [class, registers..., patches...]; `forward` returns only the patch tokens."""

    def __init__(self, img_size: int, patch_size: int, dim: int, depth: int, num_heads: int,
                 num_register_tokens: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, dim)) if num_register_tokens \
            else None
        self.mask_token = nn.Parameter(torch.zeros(1, dim), requires_grad=False)  # DINOv2 training only
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, init_values=1.0, norm_eps=1e-6)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)

    def position_embedding(self, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """(1, 1 + rows*cols, dim): the class slot plus the stored grid resized to rows x cols."""
        stored = self.pos_embed.shape[1] - 1
        side = int(round(stored ** 0.5))
        if side * side != stored:
            raise ValueError("backbone position embedding is not a square grid")
        if rows == side and cols == side:
            return self.pos_embed.to(dtype)
        table = self.pos_embed.float()
        grid = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", antialias=True)
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([table[:, :1], grid], dim=1).to(dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, 3, H, W), normalised, H and W multiples of the patch size -> (N, P, dim)."""
        n, _, h, w = images.shape
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(n, -1, -1).to(x.dtype), x], dim=1)
        x = x + self.position_embedding(h // self.patch_size, w // self.patch_size, x.dtype)
        if self.register_tokens is not None:
            x = torch.cat([x[:, :1], self.register_tokens.expand(n, -1, -1).to(x.dtype), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_register_tokens:]
