"""Procedural textures fixed to world coordinates: tileable value noise, wood, checker and marble patterns.

Patterns are evaluated once per style on a tileable texel grid (a 2 m square for the table, a cube of solid
noise for robot and objects) and looked up per pixel from the pixel's world point with bilinear (trilinear)
filtering, so a surface keeps its texture as the camera moves and the per-pixel cost is one grid_sample.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

TILE_M = 2.0      # side of the table texture tile, metres
TABLE_TEXELS = 512
NOISE_CELLS = 8   # lattice cells along a side of the solid-noise cube
NOISE_TEXELS = 32

_M32 = 0xFFFFFFFF


def _hash(*coords: torch.Tensor, seed: int) -> torch.Tensor:
    """Uniform [0, 1) value per integer lattice point (an integer hash, so no table and no Python loop)."""
    h = torch.full_like(coords[0], (seed * 0x9E3779B1) & _M32)
    for c, k in zip(coords, (0x85EBCA6B, 0xC2B2AE35, 0x27D4EB2F)):
        h = (h ^ ((c * k) & _M32)) & _M32
        h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & _M32
        h = ((h ^ (h >> 12)) * 0x297A2D39) & _M32
    h = h ^ (h >> 15)
    return h.double().div(2.0**32).float()


def _smooth(f: torch.Tensor) -> torch.Tensor:
    return f * f * (3 - 2 * f)


def value_noise(coords: list[torch.Tensor], period: int, seed: int) -> torch.Tensor:
    """Smooth value noise at lattice coordinates (float tensors), tileable with `period` cells per side.

    The lattice values are hashed once into a table when the lattice is smaller than the sample set (a
    texture's octaves), so each corner is a gather rather than a hash of every sample; same values either way.
    """
    cells = [torch.floor(c) for c in coords]
    fr = [_smooth(c - i) for c, i in zip(coords, cells)]
    base = [i.long() for i in cells]
    if period ** len(coords) <= coords[0].numel():
        axes = torch.meshgrid(*[torch.arange(period)] * len(coords), indexing="ij")
        table = _hash(*axes, seed=seed)

        def lattice(idx):
            return table[tuple(idx)]
    else:
        def lattice(idx):
            return _hash(*idx, seed=seed)
    out = torch.zeros_like(coords[0])
    for corner in range(2 ** len(coords)):
        w = torch.ones_like(coords[0])
        idx = []
        for axis, (b, f) in enumerate(zip(base, fr)):
            bit = (corner >> axis) & 1
            w = w * (f if bit else 1 - f)
            idx.append((b + bit) % period)
        out = out + w * lattice(idx)
    return out


def fbm(coords: list[torch.Tensor], period: int, seed: int, octaves: int = 4) -> torch.Tensor:
    """Fractal sum of value noise, about [0, 1], tileable like its first octave."""
    total, amp, norm = torch.zeros_like(coords[0]), 1.0, 0.0
    for o in range(octaves):
        f = 2**o
        total = total + amp * value_noise([c * f for c in coords], period * f, seed + 101 * o)
        norm += amp
        amp *= 0.5
    return total / norm


def _cycles(period_m: float) -> int:
    """Whole pattern periods per tile closest to `period_m` (tileability)."""
    return max(1, round(TILE_M / period_m))


def _table_pattern(kind: str, scale_m: float, seed: int, n: int) -> torch.Tensor:
    """(n, n) pattern value in [0, 1] over one tile (0 = base colour, 1 = accent), tileable."""
    g = (torch.arange(n, dtype=torch.float32) + 0.5) / n                 # tile fraction
    y, x = torch.meshgrid(g, g, indexing="ij")
    c = _cycles(scale_m)
    if kind == "checker":
        parity = (torch.floor(x * c) + torch.floor(y * c)) % 2
        return 0.85 * parity + 0.15 * fbm([x * 4 * c, y * 4 * c], 4 * c, seed, 3)
    if kind == "noise":
        v = fbm([x * 2 * c, y * 2 * c], 2 * c, seed, 5)
        return ((v - 0.5) * 2.2 + 0.5).clamp(0, 1)
    if kind == "wood":  # planks along x, c per tile across y; grain lines warped by stretched noise
        planks = torch.floor(y * c)
        jitter = _hash(planks.long(), seed=seed + 7)
        warp = fbm([x * c, y * 8 * c], 8 * c, seed + 1, 3)
        grain = 0.5 + 0.5 * torch.sin(2 * math.pi * (y * 6 * c + 2.5 * warp + 9 * jitter))
        fine = fbm([x * 2 * c, y * 64 * c], 64 * c, seed + 2, 2)
        seam = (torch.frac(y * c) < 0.015).float()
        return (0.55 * grain**2 + 0.25 * fine + 0.25 * jitter + 0.6 * seam).clamp(0, 1)
    if kind == "marble":  # veins where a warped diagonal sine crosses zero
        warp = fbm([x * 2 * c, y * 2 * c], 2 * c, seed, 5)
        s = torch.sin(2 * math.pi * ((x + y) * c + 3.0 * warp))
        veins = (1 - s.abs()) ** 6
        cloud = fbm([x * 4 * c, y * 4 * c], 4 * c, seed + 3, 3)
        return (0.85 * veins + 0.25 * (cloud - 0.5)).clamp(0, 1)
    raise ValueError(f"unknown texture kind {kind!r}")


def _wrap(tex: torch.Tensor) -> torch.Tensor:
    """Append the first row/column (and slice) after the last, so align_corners sampling tiles seamlessly."""
    for dim in range(2, tex.dim()):
        tex = torch.cat([tex, tex.narrow(dim, 0, 1)], dim=dim)
    return tex


@lru_cache(maxsize=16)
def table_pyramid(kind: str, base: tuple, accent: tuple, scale_m: float, seed: int) -> tuple[torch.Tensor, ...]:
    """Mip levels (1, 3, n+1, n+1) of the table texture, each wrapped for seamless lookup."""
    v = _table_pattern(kind, scale_m, seed, TABLE_TEXELS)
    b, a = torch.tensor(base), torch.tensor(accent)
    rgb = (b + (a - b) * v[..., None]).permute(2, 0, 1)[None]          # (1, 3, n, n)
    levels = [rgb]
    while levels[-1].shape[-1] > 32:
        levels.append(F.avg_pool2d(levels[-1], 2))
    return tuple(_wrap(t) for t in levels)


def sample_table(pyramid: tuple[torch.Tensor, ...], xy: torch.Tensor, rotation_deg: float,
                 footprint_m: float) -> torch.Tensor:
    """(M, 3) table colour at world points xy (M, 2); the mip level matches the pixel footprint in metres."""
    a = math.radians(rotation_deg)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=xy.dtype)
    uv = torch.remainder((xy @ rot) / TILE_M, 1.0)                          # [0, 1) of the tile
    texel = TILE_M / TABLE_TEXELS
    level = int(min(len(pyramid) - 1, max(0, math.floor(math.log2(max(footprint_m, 1e-9) / texel)))))
    grid = (uv * 2 - 1)[None, :, None, :]
    out = F.grid_sample(pyramid[level], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, :, 0].T


@lru_cache(maxsize=8)
def noise_cube(seed: int) -> torch.Tensor:
    """(1, 1, n+1, n+1, n+1) tileable solid noise in [0, 1], NOISE_CELLS lattice cells per side."""
    g = (torch.arange(NOISE_TEXELS, dtype=torch.float32) + 0.5) / NOISE_TEXELS * NOISE_CELLS
    z, y, x = torch.meshgrid(g, g, g, indexing="ij")
    v = fbm([x, y, z], NOISE_CELLS, seed, 2)
    return _wrap(v[None, None])


def sample_noise(cube: torch.Tensor, P: torch.Tensor, feature_m: float) -> torch.Tensor:
    """(M,) solid noise at world points P (M, 3) with lattice cells of `feature_m` metres (trilinear)."""
    uvw = torch.remainder(P / (feature_m * NOISE_CELLS), 1.0)
    grid = (uvw * 2 - 1)[None, :, None, None, :]
    return F.grid_sample(cube, grid, mode="bilinear", padding_mode="border", align_corners=True)[0, 0, :, 0, 0]
