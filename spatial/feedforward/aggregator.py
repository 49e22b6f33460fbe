"""Alternating-attention aggregator: per-frame tokens from the backbone, plus one camera token and register
tokens per frame, pass through `depth` pairs of blocks; the frame block attends within each image, the
global block across all images of a sequence. Each pair's two outputs, concatenated, are one layer output.

The first frame gets its own camera/register tokens (slot 0), every other frame shares slot 1: that is how
the network knows which frame defines the world. Patch tokens get 2D RoPE on (row + 1, column + 1); the
special tokens sit at position (0, 0).
"""
from __future__ import annotations

import torch
from torch import nn

from spatial.feedforward.backbone import DinoBackbone
from spatial.feedforward.config import VGGTConfig
from spatial.feedforward.layers import Block, RoPE2D, grid_positions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def first_frame_slots(tokens: torch.Tensor, B: int, S: int) -> torch.Tensor:
    """(1, 2, n, C) learned tokens -> (B*S, n, C): slot 0 for each sequence's first frame, slot 1 after."""
    first = tokens[:, :1].expand(B, 1, *tokens.shape[2:])
    rest = tokens[:, 1:].expand(B, S - 1, *tokens.shape[2:])
    return torch.cat([first, rest], dim=1).reshape(B * S, *tokens.shape[2:])


class Aggregator(nn.Module):
    """(B, S, 3, H, W) images in [0, 1] -> list of per-layer (B, S, P, 2C) tokens, and the first patch index."""

    def __init__(self, cfg: VGGTConfig):
        super().__init__()
        C = cfg.embed_dim
        self.patch_size = cfg.patch_size
        self.depth = cfg.depth
        self.patch_embed = DinoBackbone(cfg.img_size, cfg.patch_size, C, cfg.backbone_depth, cfg.backbone_heads,
                                        cfg.num_register_tokens, cfg.mlp_ratio)
        self.rope = RoPE2D(cfg.rope_freq) if cfg.rope_freq > 0 else None

        def block() -> Block:
            return Block(C, cfg.num_heads, cfg.mlp_ratio, init_values=cfg.init_values, qk_norm=True, rope=self.rope)

        self.frame_blocks = nn.ModuleList(block() for _ in range(cfg.depth))
        self.global_blocks = nn.ModuleList(block() for _ in range(cfg.depth))
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, C))
        self.register_token = nn.Parameter(torch.zeros(1, 2, cfg.num_register_tokens, C))
        nn.init.normal_(self.camera_token, std=1e-6)
        nn.init.normal_(self.register_token, std=1e-6)
        self.patch_start_idx = 1 + cfg.num_register_tokens

    def forward(self, images: torch.Tensor, keep: frozenset[int] | None = None
                ) -> tuple[list[torch.Tensor | None], int]:
        """`keep`: layer indices whose outputs are returned (others are None, to save memory); None = all."""
        B, S, c_in, H, W = images.shape
        if c_in != 3:
            raise ValueError(f"expected 3 colour channels, got {c_in}")
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {self.patch_size}")
        mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 1, 3, 1, 1)
        x = ((images - mean) / std).reshape(B * S, 3, H, W)
        patches = self.patch_embed(x)
        special = torch.cat([first_frame_slots(self.camera_token, B, S),
                             first_frame_slots(self.register_token, B, S)], dim=1).to(patches.dtype)
        tokens = torch.cat([special, patches], dim=1)
        _, P, C = tokens.shape

        pos = None
        if self.rope is not None:
            grid = grid_positions(B * S, H // self.patch_size, W // self.patch_size, images.device) + 1
            pos = torch.cat([grid.new_zeros(B * S, self.patch_start_idx, 2), grid], dim=1)
        pos_global = pos.reshape(B, S * P, 2) if pos is not None else None

        outputs: list[torch.Tensor | None] = []
        for i in range(self.depth):
            tokens = self.frame_blocks[i](tokens.reshape(B * S, P, C), pos=pos)
            frame_out = tokens.reshape(B, S, P, C)
            tokens = self.global_blocks[i](tokens.reshape(B, S * P, C), pos=pos_global)
            if keep is None or i in keep:
                outputs.append(torch.cat([frame_out, tokens.reshape(B, S, P, C)], dim=-1))
            else:
                outputs.append(None)
        return outputs, self.patch_start_idx
