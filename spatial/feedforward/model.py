"""The whole network: aggregator + camera, depth, point-map and tracking heads, in VGGT's state-dict layout.

Input: (S, 3, H, W) or (B, S, 3, H, W) images in [0, 1], H and W multiples of 14 (518 px on the long side
for the official weights). Output dict, all in the first frame's camera frame, up to an unknown scale:
  pose_enc (B, S, 9) and pose_enc_list   translation, quaternion XYZW, fov_h, fov_w (world-to-camera)
  depth (B, S, H, W, 1), depth_conf (B, S, H, W)
  world_points (B, S, H, W, 3), world_points_conf (B, S, H, W)
  track (B, S, N, 2), vis, conf (B, S, N)   only when query_points (B, N, 2) pixels in frame 0 are given
"""
from __future__ import annotations

import torch
from torch import nn

from spatial.feedforward.aggregator import Aggregator
from spatial.feedforward.camera_head import CameraHead
from spatial.feedforward.config import VGGT_1B, VGGTConfig
from spatial.feedforward.dpt_head import DPTHead
from spatial.feedforward.track_head import TrackHead


class VGGT(nn.Module):
    """Feed-forward multi-view geometry (the VGGT architecture), configured by a `VGGTConfig`."""

    def __init__(self, cfg: VGGTConfig = VGGT_1B):
        super().__init__()
        self.cfg = cfg
        self.aggregator = Aggregator(cfg)
        dim = cfg.head_dim_in

        def dpt(output_dim: int, activation: str) -> DPTHead:
            return DPTHead(dim, cfg.patch_size, cfg.dpt_layers, cfg.dpt_channels, cfg.dpt_features,
                           output_dim=output_dim, activation=activation, head_hidden=cfg.dpt_head_hidden,
                           frames_chunk=cfg.dpt_frames_chunk)

        self.camera_head = CameraHead(cfg) if cfg.enable_camera else None
        self.point_head = dpt(4, "inv_log") if cfg.enable_point else None
        self.depth_head = dpt(2, "exp") if cfg.enable_depth else None
        self.track_head = TrackHead(cfg) if cfg.enable_track else None

    def forward(self, images: torch.Tensor, query_points: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if images.ndim == 4:
            images = images[None]
        if query_points is not None and query_points.ndim == 2:
            query_points = query_points[None]
        tokens, start = self.aggregator(images, keep=self.cfg.keep_layers)
        hw = tuple(images.shape[-2:])
        out: dict[str, torch.Tensor] = {}
        # heads run in their own precision (fp32 unless the model was cast), outside any autocast of the trunk
        with torch.autocast(device_type=images.device.type, enabled=False):
            head_dtype = next(self.parameters()).dtype
            tokens = [t.to(head_dtype) if t is not None else None for t in tokens]
            if self.camera_head is not None:
                poses = self.camera_head(tokens[-1])
                out["pose_enc"], out["pose_enc_list"] = poses[-1], poses
            if self.depth_head is not None:
                out["depth"], out["depth_conf"] = self.depth_head(tokens, hw, start)
            if self.point_head is not None:
                out["world_points"], out["world_points_conf"] = self.point_head(tokens, hw, start)
            if self.track_head is not None and query_points is not None:
                tracks, vis, conf = self.track_head(tokens, hw, start, query_points.to(head_dtype))
                out["track"], out["track_list"], out["vis"], out["conf"] = tracks[-1], tracks, vis, conf
        return out


def build_vggt(cfg: VGGTConfig = VGGT_1B, device: str | torch.device | None = None) -> VGGT:
    """A network with this config; `device="meta"` builds shapes only (instant, no memory) for weight loading."""
    if device is None:
        return VGGT(cfg)
    with torch.device(device):
        return VGGT(cfg)
