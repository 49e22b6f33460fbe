"""Typed sizes of the feed-forward geometry network: VGGT-1B's by default, and a tiny preset for the CPU.

Every field changes a parameter shape or count, so a config plus `VGGT(config)` fixes the state-dict layout;
the defaults are the official VGGT-1B ones, which is what lets its `model.pt` / `model.safetensors` load.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class VGGTConfig:
    """Sizes of the backbone, the alternating-attention aggregator and the four heads."""

    img_size: int = 518                 # training resolution: the backbone stores a 37x37 position grid
    patch_size: int = 14
    embed_dim: int = 1024               # token width of backbone and aggregator; heads see 2 * embed_dim
    depth: int = 24                     # frame/global block pairs in the aggregator
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4        # DINOv2 registers, and the aggregator's per-frame register tokens
    rope_freq: float = 100.0            # base frequency of the 2D rotary embedding (<= 0: no RoPE)
    init_values: float = 0.01           # LayerScale init of aggregator and camera-trunk blocks
    backbone_depth: int = 24            # DINOv2 ViT-L/14 blocks
    backbone_heads: int = 16
    camera_trunk_depth: int = 4         # transformer blocks in the camera head's adaLN trunk
    camera_heads: int = 16
    camera_iterations: int = 4          # iterative refinements of the 9-d pose encoding
    dpt_layers: tuple[int, ...] = (4, 11, 17, 23)   # aggregator layers the DPT heads read
    dpt_features: int = 256
    dpt_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    dpt_head_hidden: int = 32           # channels of the last 3x3 conv before the output 1x1 conv
    dpt_frames_chunk: int = 8           # frames decoded at once by a DPT head (memory, not results)
    enable_camera: bool = True
    enable_depth: bool = True
    enable_point: bool = True
    enable_track: bool = True
    track_features: int = 128           # tracker latent width (the track DPT's feature channels)
    track_hidden: int = 384             # update-transformer width
    track_depth: int = 6                # update-transformer time (and space) blocks
    track_heads: int = 8
    track_virtual: int = 64             # virtual tracks of the space attention
    track_corr_levels: int = 7
    track_corr_radius: int = 4
    track_stride: int = 2               # track feature maps are at half resolution
    track_iterations: int = 4

    def __post_init__(self):
        head_dim = self.embed_dim // max(self.num_heads, 1)
        checks = [
            (self.embed_dim % self.num_heads == 0, "embed_dim must be a multiple of num_heads"),
            (self.embed_dim % self.backbone_heads == 0, "embed_dim must be a multiple of backbone_heads"),
            ((2 * self.embed_dim) % self.camera_heads == 0, "2 * embed_dim must be a multiple of camera_heads"),
            (self.rope_freq <= 0 or head_dim % 4 == 0, "RoPE needs a head width that is a multiple of 4"),
            (self.img_size % self.patch_size == 0, "img_size must be a multiple of patch_size"),
            (len(self.dpt_layers) == 4 and all(0 <= i < self.depth for i in self.dpt_layers),
             "dpt_layers must be four aggregator layer indices"),
            (all(c % 4 == 0 for c in self.dpt_channels) and self.dpt_features % 4 == 0,
             "DPT channel counts must be multiples of 4 (sin/cos position embedding)"),
            (self.track_hidden % self.track_heads == 0, "track_hidden must be a multiple of track_heads"),
            (self.track_depth > 0, "track_depth must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"VGGTConfig: {message}")

    @property
    def head_dim_in(self) -> int:
        """Width of the tokens the heads read: frame and global outputs concatenated."""
        return 2 * self.embed_dim

    @property
    def keep_layers(self) -> frozenset[int]:
        """Aggregator layers any head reads: only these are kept during a forward pass."""
        return frozenset(self.dpt_layers) | {self.depth - 1}


VGGT_1B = VGGTConfig()


def tiny_config(**overrides) -> VGGTConfig:
    """The same structure at toy sizes: a few layers, 32-wide tokens; builds and runs in well under a second."""
    base = VGGTConfig(
        img_size=56, embed_dim=32, depth=4, num_heads=2, backbone_depth=2, backbone_heads=2,
        camera_trunk_depth=1, camera_heads=2, dpt_layers=(0, 1, 2, 3), dpt_features=16,
        dpt_channels=(8, 16, 32, 32), dpt_head_hidden=8, track_features=16, track_hidden=32, track_depth=2,
        track_heads=2, track_virtual=8, track_corr_levels=2, track_corr_radius=2,
    )
    return replace(base, **overrides)
