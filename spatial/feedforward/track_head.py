"""Tracking head: query pixels in the first frame -> their positions, visibility and confidence in every frame.

A DPT decoder gives half-resolution feature maps; a CoTracker-style predictor then refines all tracks
jointly: correlation pyramids around the current positions, a transformer over time (per track) and over
tracks (through a few virtual tracks), and the predicted position/feature updates, for a few rounds.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spatial.feedforward.config import VGGTConfig
from spatial.feedforward.dpt_head import DPTHead
from spatial.feedforward.layers import Mlp


def sample_bilinear(fmap: torch.Tensor, xy: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """fmap (N, C, H, W), xy (N, h, w, 2) pixel coordinates (pixel centres at integers) -> (N, C, h, w)."""
    H, W = fmap.shape[-2:]
    scale = torch.tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)], device=xy.device, dtype=fmap.dtype)
    grid = xy.detach().to(fmap.dtype) * scale - 1
    return F.grid_sample(fmap, grid, align_corners=True, padding_mode=padding_mode)


def sample_points(fmap: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """fmap (B, C, H, W), xy (B, N, 2) -> (B, N, C)."""
    return sample_bilinear(fmap, xy[:, :, None]).squeeze(-1).transpose(1, 2)


def sincos_grid(dim: int, rows: int, cols: int) -> torch.Tensor:
    """(1, dim, rows, cols): half the channels encode the column, half the row (sin then cos, base 10000)."""
    def embed(pos, d):
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        a = torch.outer(pos.reshape(-1).double(), omega)
        return torch.cat([a.sin(), a.cos()], dim=1)

    yy, xx = torch.meshgrid(torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32),
                            indexing="ij")
    emb = torch.cat([embed(xx, dim // 2), embed(yy, dim // 2)], dim=1).float()
    return emb.reshape(1, rows, cols, dim).permute(0, 3, 1, 2)


def flow_embedding(xy: torch.Tensor, C: int) -> torch.Tensor:
    """(..., 2) displacements -> (..., 2C): interleaved sin/cos of x, then of y."""
    freq = torch.arange(0, C, 2, device=xy.device, dtype=torch.float32) * (1000.0 / C)
    out = []
    for k in range(2):
        a = xy[..., k:k + 1].float() * freq
        out.append(torch.stack([a.sin(), a.cos()], dim=-1).flatten(-2))
    return torch.cat(out, dim=-1)


class AttnBlock(nn.Module):
    """Self-attention block (torch MultiheadAttention); the residual is taken after the first norm."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        x = x + self.attn(x, x, x, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    """Cross-attention block: x attends to a normalised context."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x)
        context = self.norm_context(context)
        x = x + self.cross_attn(x, context, context, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class UpdateFormer(nn.Module):
    """Transformer over (B, N tracks, S frames, C): time blocks per track, and space blocks that route
    track-to-track exchange through `virtual` learned tracks (module names as VGGT's EfficientUpdateFormer)."""

    def __init__(self, input_dim: int, hidden: int, output_dim: int, depth: int, num_heads: int, virtual: int):
        super().__init__()
        self.num_virtual = virtual
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden)
        self.output_norm = nn.LayerNorm(hidden)
        self.flow_head = nn.Linear(hidden, output_dim)
        self.virual_tracks = nn.Parameter(torch.randn(1, virtual, 1, hidden))   # sic: the checkpoint's name
        self.time_blocks = nn.ModuleList(AttnBlock(hidden, num_heads) for _ in range(depth))
        self.space_virtual_blocks = nn.ModuleList(AttnBlock(hidden, num_heads) for _ in range(depth))
        self.space_point2virtual_blocks = nn.ModuleList(CrossAttnBlock(hidden, num_heads) for _ in range(depth))
        self.space_virtual2point_blocks = nn.ModuleList(CrossAttnBlock(hidden, num_heads) for _ in range(depth))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.flow_head.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.input_transform(self.input_norm(x))
        start = tokens
        B, N0, T, C = tokens.shape
        tokens = torch.cat([tokens, self.virual_tracks.expand(B, -1, T, -1).to(tokens.dtype)], dim=1)
        N = tokens.shape[1]
        every = len(self.time_blocks) // len(self.space_virtual_blocks)
        j = 0
        for i, block in enumerate(self.time_blocks):
            tokens = block(tokens.reshape(B * N, T, C)).reshape(B, N, T, C)
            if i % every == 0:
                space = tokens.permute(0, 2, 1, 3).reshape(B * T, N, C)
                points, virtual = space[:, :N0], space[:, N0:]
                virtual = self.space_virtual2point_blocks[j](virtual, points)
                virtual = self.space_virtual_blocks[j](virtual)
                points = self.space_point2virtual_blocks[j](points, virtual)
                tokens = torch.cat([points, virtual], dim=1).reshape(B, T, N, C).permute(0, 2, 1, 3)
                j += 1
        return self.flow_head(self.output_norm(tokens[:, :N0] + start))


class TrackerPredictor(nn.Module):
    """Iterative track refinement over feature maps (module names as VGGT's BaseTrackerPredictor)."""

    def __init__(self, cfg: VGGTConfig, max_scale: int = 518):
        super().__init__()
        latent = cfg.track_features
        self.latent = latent
        self.stride = cfg.track_stride
        self.levels = cfg.track_corr_levels
        self.radius = cfg.track_corr_radius
        self.max_scale = max_scale
        self.transformer_dim = 3 * latent + 4
        self.corr_mlp = Mlp(self.levels * (2 * self.radius + 1) ** 2, cfg.track_hidden, latent)
        self.query_ref_token = nn.Parameter(torch.randn(1, 2, self.transformer_dim))
        self.updateformer = UpdateFormer(self.transformer_dim, cfg.track_hidden, latent + 2, cfg.track_depth,
                                         cfg.track_heads, cfg.track_virtual)
        self.fmap_norm = nn.LayerNorm(latent)
        self.ffeat_norm = nn.GroupNorm(1, latent)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent, latent), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent, 1))
        self.conf_predictor = nn.Sequential(nn.Linear(latent, 1))

    def _correlations(self, pyramid: list[torch.Tensor], feats: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Correlation of each track's feature with each level's map, sampled on a (2r+1)^2 window."""
        B, S, N, C = feats.shape
        r = self.radius
        d = torch.linspace(-r, r, 2 * r + 1, device=coords.device, dtype=coords.dtype)
        # the window's first component steps along rows of the sample grid and is added to x (as VGGT does)
        window = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1).view(1, 2 * r + 1, 2 * r + 1, 2)
        out = []
        for level, fmap in enumerate(pyramid):
            H, W = fmap.shape[-2:]
            corr = torch.matmul(feats, fmap.reshape(B, S, C, H * W)) / math.sqrt(C)
            xy = coords.reshape(B * S * N, 1, 1, 2) / 2 ** level + window
            sampled = sample_bilinear(corr.reshape(B * S * N, 1, H, W), xy, padding_mode="zeros")
            out.append(sampled.reshape(B, S, N, -1))
        return torch.cat(out, dim=-1)

    def forward(self, query_points: torch.Tensor, fmaps: torch.Tensor, iterations: int):
        """query_points (B, N, 2) pixels in frame 0; fmaps (B, S, C, h, w) -> (list of (B, S, N, 2), vis, conf)."""
        B, N, _ = query_points.shape
        _, S, C, h, w = fmaps.shape
        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        queries = query_points / float(self.stride)
        coords = queries[:, None].expand(B, S, N, 2).clone()
        feats = sample_points(fmaps[:, 0], queries)[:, None].expand(B, S, N, C).contiguous()
        pyramid = [fmaps]
        for _ in range(self.levels - 1):
            prev = pyramid[-1]
            pooled = F.avg_pool2d(prev.reshape(B * S, C, *prev.shape[-2:]), kernel_size=2, stride=2)
            pyramid.append(pooled.reshape(B, S, C, *pooled.shape[-2:]))
        pos = sample_points(sincos_grid(self.transformer_dim, h, w).to(fmaps).expand(B, -1, -1, -1), queries)
        pos = pos.reshape(B * N, 1, -1)
        ref = torch.cat([self.query_ref_token[:, :1], self.query_ref_token[:, 1:].expand(-1, S - 1, -1)], dim=1)
        preds = []
        for _ in range(iterations):
            coords = coords.detach()
            corr = self.corr_mlp(self._correlations(pyramid, feats, coords).permute(0, 2, 1, 3).reshape(B * N, S, -1))
            flows = (coords - coords[:, :1]).permute(0, 2, 1, 3).reshape(B * N, S, 2)
            flow_in = torch.cat([flow_embedding(flows, self.latent // 2).to(flows),
                                 flows / self.max_scale, flows / self.max_scale], dim=-1)
            track = feats.permute(0, 2, 1, 3).reshape(B * N, S, C)
            x = torch.cat([flow_in, corr, track], dim=-1) + pos + ref.to(flows)
            delta = self.updateformer(x.reshape(B, N, S, -1)).reshape(B * N, S, -1)
            track = track.reshape(-1, C) + self.ffeat_updater(self.ffeat_norm(delta[..., 2:].reshape(-1, C)))
            feats = track.reshape(B, N, S, C).permute(0, 2, 1, 3)
            coords = coords + delta[..., :2].reshape(B, N, S, 2).permute(0, 2, 1, 3)
            coords = torch.cat([queries[:, None], coords[:, 1:]], dim=1)   # frame 0 stays at the query
            preds.append(coords * self.stride)
        flat = feats.reshape(B * S * N, C)
        vis = torch.sigmoid(self.vis_predictor(flat).view(B, S, N))
        conf = torch.sigmoid(self.conf_predictor(flat).view(B, S, N))
        return preds, vis, conf


class TrackHead(nn.Module):
    """Half-resolution DPT features + the tracker."""

    def __init__(self, cfg: VGGTConfig):
        super().__init__()
        self.iterations = cfg.track_iterations
        self.feature_extractor = DPTHead(cfg.head_dim_in, cfg.patch_size, cfg.dpt_layers, cfg.dpt_channels,
                                         cfg.track_features, pos_embed=False, feature_only=True, down_ratio=2,
                                         frames_chunk=cfg.dpt_frames_chunk)
        self.tracker = TrackerPredictor(cfg)

    def forward(self, tokens, image_hw, patch_start_idx, query_points, iterations: int | None = None):
        fmaps = self.feature_extractor(tokens, image_hw, patch_start_idx)
        return self.tracker(query_points, fmaps, iterations or self.iterations)
