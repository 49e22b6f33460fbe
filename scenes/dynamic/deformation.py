"""The deformation field of 4D Gaussians: a multi-resolution HexPlane over (x, y, z, t) and small MLP heads.

The recipe of 4DGaussians (Wu et al., CVPR 2024): six 2D feature planes (xy, xz, yz, xt, yt, zt) per
resolution level, sampled bilinearly at a Gaussian's canonical centre and the time, multiplied across the six
planes and concatenated across levels; one trunk layer, then three heads predicting a Gaussian's change of
centre, rotation and log scale. Time planes start at 1 (features do not depend on time) and every head's output
layer starts at 0, so at initialisation the field is exactly the identity: the dynamic render is the static one.

Twin's choices where the recipe leaves room: time maps [0, 1] onto the whole time axis of the planes; the
rotation change is a quaternion applied on the left (dq * q, a world-frame turn, the same for every Gaussian of
a rigidly turning part) instead of added to q; the bounds are the canonical centres' robust extent.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

FIELD_KIND = "hexplane"
SPACE_AXES = ((0, 1), (0, 2), (1, 2))  # plane (a, b): its width indexes axis a, its height axis b
TIME_AXES = (0, 1, 2)  # plane (a, t): its width indexes axis a, its height time


@dataclass
class DeformationConfig:
    """Architecture of the field; stored in the bundle's dynamic/ description, it rebuilds the field."""

    resolution: int = 32
    """spatial cells per axis of the coarsest level's planes, over the bounds"""
    multires: tuple[int, ...] = (1, 2)
    """spatial resolution multiplier of each level (4DGaussians: 1, 2, 4, 8 on a GPU)"""
    time_resolution: int = 24
    """cells along time of every time plane (4DGaussians: about half the number of frames)"""
    features: int = 16
    """feature channels per level"""
    width: int = 64
    """width of the trunk and the heads"""
    depth: int = 1
    """linear layers in the trunk (4DGaussians: 1)"""
    bounds: list[float] = field(default_factory=lambda: [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    """axis-aligned box (min xyz, max xyz) the planes span; centres outside use the border features"""

    def to_json(self) -> dict:
        return {"kind": FIELD_KIND, **asdict(self), "multires": list(self.multires)}

    @staticmethod
    def from_json(d: dict) -> DeformationConfig:
        if d.get("kind") != FIELD_KIND:
            raise ValueError(f"unknown deformation field kind {d.get('kind')!r} (this Twin has {FIELD_KIND!r})")
        keys = {"resolution", "multires", "time_resolution", "features", "width", "depth", "bounds"}
        cfg = DeformationConfig(**{k: d[k] for k in keys if k in d})
        cfg.multires = tuple(int(m) for m in cfg.multires)
        cfg.bounds = [float(b) for b in cfg.bounds]
        if len(cfg.bounds) != 6 or min(cfg.resolution, cfg.time_resolution, cfg.features, cfg.width, cfg.depth) < 1:
            raise ValueError("deformation field: bounds must hold 6 numbers and every size must be positive")
        return cfg


def robust_bounds(means: torch.Tensor, margin: float = 0.05, quantile: float = 0.005) -> list[float]:
    """The box holding all but the outermost `quantile` of centres per axis, grown by `margin` of its size."""
    m = means.detach().double().cpu()
    lo = torch.quantile(m, quantile, dim=0) if len(m) > 10 else m.min(0).values
    hi = torch.quantile(m, 1 - quantile, dim=0) if len(m) > 10 else m.max(0).values
    pad = (hi - lo).clamp_min(1e-3) * margin
    return [*(lo - pad).tolist(), *(hi + pad).tolist()]


class HexPlane(nn.Module):
    """Multi-resolution HexPlane: features (N, features * levels) at points (N, 3) and times in [0, 1]."""

    def __init__(self, cfg: DeformationConfig):
        super().__init__()
        b = torch.tensor(cfg.bounds, dtype=torch.float32)
        self.register_buffer("lo", b[:3].clone())
        self.register_buffer("hi", b[3:].clone())
        self.space = nn.ParameterList()
        self.time = nn.ParameterList()
        for m in cfg.multires:
            r = cfg.resolution * int(m)
            self.space.append(nn.Parameter(torch.empty(3, cfg.features, r, r).uniform_(0.1, 0.5)))
            self.time.append(nn.Parameter(torch.ones(3, cfg.features, cfg.time_resolution, r)))

    @property
    def out_dim(self) -> int:
        return sum(p.shape[1] for p in self.space)

    def forward(self, xyz: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        p = (xyz - self.lo) * (2.0 / (self.hi - self.lo)) - 1.0
        tt = torch.as_tensor(t, dtype=p.dtype, device=p.device).expand(p.shape[0]) * 2.0 - 1.0
        g_space = torch.stack([p[:, [a, b]] for a, b in SPACE_AXES])[:, None]  # (3, 1, N, 2)
        g_time = torch.stack([torch.stack([p[:, a], tt], -1) for a in TIME_AXES])[:, None]
        feats = []
        for sp, tp in zip(self.space, self.time):
            fs = F.grid_sample(sp, g_space, mode="bilinear", padding_mode="border", align_corners=True)
            ft = F.grid_sample(tp, g_time, mode="bilinear", padding_mode="border", align_corners=True)
            feats.append((fs.prod(0) * ft.prod(0))[:, 0].T)  # product over the six planes: (N, C)
        return torch.cat(feats, -1)

    def regularisers(self) -> dict[str, torch.Tensor]:
        """4DGaussians' plane losses: total variation of the space planes, smoothness (second difference) along
        time and L1 distance from 1 (no motion) of the time planes, each averaged over levels."""
        tv = sum(_tv(sp) for sp in self.space) / len(self.space)
        smooth = sum(_second_difference(tp) for tp in self.time) / len(self.time)
        l1 = sum((1.0 - tp).abs().mean() for tp in self.time) / len(self.time)
        return {"plane_tv": tv, "time_smoothness": smooth, "time_l1": l1}


def _tv(p: torch.Tensor) -> torch.Tensor:
    return ((p[..., 1:, :] - p[..., :-1, :]) ** 2).mean() + ((p[..., 1:] - p[..., :-1]) ** 2).mean()


def _second_difference(p: torch.Tensor) -> torch.Tensor:
    if p.shape[-2] < 3:
        return p.new_zeros(())
    return ((p[..., 2:, :] - 2 * p[..., 1:-1, :] + p[..., :-2, :]) ** 2).mean()


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a * b of wxyz quaternions (..., 4)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], -1)


def _head(width: int, out: int) -> nn.Sequential:
    last = nn.Linear(width, out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.ReLU(), nn.Linear(width, width), nn.ReLU(), last)


class DeformationField(nn.Module):
    """(canonical centres, quaternions, log scales, time) -> the Gaussians' centres, quaternions and log scales
    at that time. Identity at initialisation."""

    def __init__(self, cfg: DeformationConfig):
        super().__init__()
        self.cfg = cfg
        self.grid = HexPlane(cfg)
        layers: list[nn.Module] = [nn.Linear(self.grid.out_dim, cfg.width)]
        for _ in range(cfg.depth - 1):
            layers += [nn.ReLU(), nn.Linear(cfg.width, cfg.width)]
        self.trunk = nn.Sequential(*layers)
        self.d_xyz = _head(cfg.width, 3)
        self.d_rot = _head(cfg.width, 4)
        self.d_scale = _head(cfg.width, 3)

    def forward(self, means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor,
                t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.trunk(self.grid(means, t))
        dq = self.d_rot(h)
        dq = torch.cat([dq[:, :1] + 1.0, dq[:, 1:]], -1)
        return means + self.d_xyz(h), quat_multiply(dq, quats), log_scales + self.d_scale(h)

    def mlp_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.startswith("grid.")]

    def grid_parameters(self) -> list[nn.Parameter]:
        return list(self.grid.parameters())
