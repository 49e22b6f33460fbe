"""Camera head: each frame's camera token -> a 9-d pose encoding (translation, quaternion XYZW, fov_h, fov_w),
refined iteratively. Each round embeds the current estimate, turns it into adaLN shift/scale/gate for the
tokens, runs a small transformer trunk across the frames and adds the predicted correction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spatial.feedforward.config import VGGTConfig
from spatial.feedforward.layers import Block, Mlp

POSE_DIM = 9


def activate_pose(enc: torch.Tensor) -> torch.Tensor:
    """Translation and quaternion stay linear; the two fields of view go through a ReLU (never negative)."""
    return torch.cat([enc[..., :7], F.relu(enc[..., 7:])], dim=-1)


class CameraHead(nn.Module):
    """(B, S, P, 2C) last-layer tokens -> list of (B, S, 9) pose encodings, one per refinement."""

    def __init__(self, cfg: VGGTConfig):
        super().__init__()
        dim = cfg.head_dim_in
        self.iterations = cfg.camera_iterations
        self.trunk = nn.Sequential(*[Block(dim, cfg.camera_heads, cfg.mlp_ratio, init_values=cfg.init_values)
                                     for _ in range(cfg.camera_trunk_depth)])
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_DIM))
        self.embed_pose = nn.Linear(POSE_DIM, dim)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, POSE_DIM)

    def forward(self, last_tokens: torch.Tensor, iterations: int | None = None) -> list[torch.Tensor]:
        cam = self.token_norm(last_tokens[:, :, 0])   # (B, S, 2C): the camera token of every frame
        B, S, _ = cam.shape
        estimate = None
        out = []
        for _ in range(iterations or self.iterations):
            if estimate is None:
                cond = self.embed_pose(self.empty_pose_tokens.expand(B, S, -1))
            else:
                estimate = estimate.detach()   # each round learns its own correction, no backprop through time
                cond = self.embed_pose(estimate)
            shift, scale, gate = self.poseLN_modulation(cond).chunk(3, dim=-1)
            x = cam + gate * (self.adaln_norm(cam) * (1 + scale) + shift)
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            estimate = delta if estimate is None else estimate + delta
            out.append(activate_pose(estimate))
        return out
