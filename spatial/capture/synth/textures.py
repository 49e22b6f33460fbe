"""Procedural solid textures: multi-octave value noise of the 3D hit point, faded per pixel footprint.

Solid (3D) textures need no UVs and look identical from every view, which is what SfM and multi-view
stereo need. Each octave uses its own random rotation and offset, so the lattice never lines up into a
periodic pattern; octaves finer than ~2 pixels are faded out to avoid aliasing (a cheap mip-map).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatial.capture.synth.geometry import rows_at

GRID = 128  # (power of two) lattice size of the value-noise table; wraps, but octave rotations hide the period


@dataclass(frozen=True)
class Material:
    """A procedural surface: two blended colours, a speckle colour and the noise scales (metres)."""

    name: str
    base: tuple[float, float, float]
    alt: tuple[float, float, float]
    speck: tuple[float, float, float]
    cell: float = 0.25  # coarsest octave cell size
    octaves: int = 5
    contrast: float = 1.0
    speck_cell: float = 0.04  # size of speckle blobs
    speck_amount: float = 0.35  # fraction of the surface covered by speckles (roughly)
    marker: bool = False  # textured from the ArUco image instead of noise

    @property
    def mean_colour(self) -> np.ndarray:
        return (0.6 * np.array(self.base) + 0.3 * np.array(self.alt) + 0.1 * np.array(self.speck)).clip(0, 1)


@dataclass
class NoiseField:
    """The random tables behind every material: a value lattice plus per-(material, octave) transforms."""

    table: np.ndarray  # (GRID**3,) float32 uniform [0, 1)
    rotations: np.ndarray  # (M, O, 3, 3) float32
    offsets: np.ndarray  # (M, O, 3) float32
    scale: float = 1.0  # every pattern (noise cells, speckles, brightness blotches) this many times larger


LACUNARITY = 2.17  # not 2, so octave lattices do not nest
N_OCT = 8  # octave slots: 0..5 fbm, 6 speckle, 7 brightness


def make_noise(seed: int, n_materials: int, scale: float = 1.0) -> NoiseField:
    """Deterministic noise tables for `n_materials` materials, patterns `scale` times their nominal size."""
    rng = np.random.default_rng([seed, 7101])
    table = rng.random(GRID ** 3, dtype=np.float32)
    q = rng.normal(size=(n_materials, N_OCT, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    R = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)
    offsets = rng.uniform(0, GRID, size=(n_materials, N_OCT, 3))
    return NoiseField(table=table, rotations=R.astype(np.float32), offsets=offsets.astype(np.float32),
                      scale=float(scale))


def value_noise(table: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Smooth value noise in [0, 1] at lattice coordinates p (N, 3): smoothstep-weighted trilinear lookup."""
    fl = np.floor(p)
    f = (p - fl).astype(np.float32)
    f = f * f * (3.0 - 2.0 * f)
    i = fl.astype(np.int32) & (GRID - 1)  # GRID is a power of two: wrap with a mask
    j = (i + 1) & (GRID - 1)
    xs = (i[:, 0] * (GRID * GRID), j[:, 0] * (GRID * GRID))
    ys = (i[:, 1] * GRID, j[:, 1] * GRID)
    zs = (i[:, 2], j[:, 2])
    wx = (1.0 - f[:, 0], f[:, 0])
    wy = (1.0 - f[:, 1], f[:, 1])
    wz = (1.0 - f[:, 2], f[:, 2])
    out = np.zeros(len(p), dtype=np.float32)
    for a in (0, 1):
        for b in (0, 1):
            xy = xs[a] + ys[b]
            wab = wx[a] * wy[b]
            out += table[xy + zs[0]] * (wab * wz[0]) + table[xy + zs[1]] * (wab * wz[1])
    return out


def _fade(cell: float, footprint: np.ndarray) -> np.ndarray:
    """Octave weight: 1 when a cell spans >= 2.5 pixels, 0 at <= 1 pixel."""
    return np.clip((cell / footprint - 1.0) / 1.5, 0.0, 1.0)


def material_albedo(field: NoiseField, m: int, mat: Material, p: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Albedo (N, 3) in [0, 1] of material index m at world points p (N, 3), given metres-per-pixel footprint."""
    n = len(p)
    n_fbm = min(mat.octaves, 6)
    cells = [mat.cell / LACUNARITY ** k for k in range(n_fbm)] + [0.0] * (6 - n_fbm) + [mat.speck_cell, 0.7]
    cells = [c * field.scale for c in cells]
    used = [k for k in range(N_OCT) if cells[k] > 0]
    # lattice coordinates of every octave at once: q_k = R_k p / cell_k + offset_k
    A = np.concatenate([field.rotations[m, k].T / cells[k] for k in used], axis=1)
    off = np.concatenate([field.offsets[m, k] for k in used])
    Q = rows_at(p.astype(np.float32), A.astype(np.float32)) + off
    slot = {k: slice(3 * i, 3 * i + 3) for i, k in enumerate(used)}

    fbm = np.zeros(n, dtype=np.float32)
    norm = 0.0
    for k in range(n_fbm):
        amp = 0.62 ** k
        norm += amp * amp
        w = _fade(cells[k], footprint)
        live = w > 0
        if live.all():
            fbm += amp * (value_noise(field.table, Q[:, slot[k]]) - 0.5) * w
        elif live.any():
            fbm[live] += amp * (value_noise(field.table, Q[live, slot[k]]) - 0.5) * w[live]
    fbm *= mat.contrast * 2.2 / np.sqrt(norm)
    t = np.clip(0.5 + fbm, 0.0, 1.0)
    t = t * t * (3.0 - 2.0 * t)
    base, alt, speck = (np.asarray(c, dtype=np.float32) for c in (mat.base, mat.alt, mat.speck))
    col = base + (alt - base) * t[:, None]
    if mat.speck_amount > 0:
        s = value_noise(field.table, Q[:, slot[6]])
        blob = np.clip((s - (1.0 - mat.speck_amount)) / 0.06, 0.0, 1.0) * _fade(mat.speck_cell, footprint)
        col += (speck - col) * blob[:, None]
    bright = value_noise(field.table, Q[:, slot[7]])
    col *= (0.82 + 0.36 * bright)[:, None]
    return np.clip(col, 0.0, 1.0)


MATERIALS: tuple[Material, ...] = (
    Material("floor", base=(0.45, 0.32, 0.22), alt=(0.68, 0.52, 0.36), speck=(0.25, 0.16, 0.10),
             cell=0.35, octaves=6, contrast=1.2, speck_cell=0.05, speck_amount=0.25),
    Material("wall_a", base=(0.78, 0.74, 0.66), alt=(0.60, 0.62, 0.55), speck=(0.35, 0.40, 0.45),
             cell=0.5, octaves=6, contrast=1.0, speck_cell=0.08, speck_amount=0.3),
    Material("wall_b", base=(0.55, 0.65, 0.72), alt=(0.80, 0.82, 0.78), speck=(0.70, 0.45, 0.30),
             cell=0.45, octaves=6, contrast=1.0, speck_cell=0.07, speck_amount=0.3),
    Material("ceiling", base=(0.86, 0.86, 0.84), alt=(0.70, 0.72, 0.74), speck=(0.55, 0.55, 0.6),
             cell=0.6, octaves=5, contrast=0.8, speck_cell=0.1, speck_amount=0.2),
    Material("rug", base=(0.55, 0.14, 0.12), alt=(0.85, 0.62, 0.30), speck=(0.10, 0.22, 0.35),
             cell=0.2, octaves=6, contrast=1.4, speck_cell=0.035, speck_amount=0.35),
    Material("table_top", base=(0.62, 0.44, 0.26), alt=(0.82, 0.66, 0.44), speck=(0.35, 0.22, 0.12),
             cell=0.12, octaves=6, contrast=1.3, speck_cell=0.018, speck_amount=0.3),
    Material("table_leg", base=(0.20, 0.18, 0.17), alt=(0.38, 0.33, 0.30), speck=(0.6, 0.6, 0.55),
             cell=0.08, octaves=5, contrast=1.0, speck_cell=0.02, speck_amount=0.2),
    Material("box_card", base=(0.72, 0.55, 0.35), alt=(0.55, 0.38, 0.22), speck=(0.12, 0.12, 0.14),
             cell=0.08, octaves=6, contrast=1.2, speck_cell=0.015, speck_amount=0.35),
    Material("box_blue", base=(0.15, 0.30, 0.62), alt=(0.45, 0.65, 0.85), speck=(0.95, 0.85, 0.25),
             cell=0.07, octaves=6, contrast=1.3, speck_cell=0.014, speck_amount=0.3),
    Material("mug", base=(0.85, 0.30, 0.15), alt=(0.95, 0.75, 0.55), speck=(0.15, 0.10, 0.35),
             cell=0.05, octaves=5, contrast=1.3, speck_cell=0.012, speck_amount=0.35),
    Material("ball", base=(0.25, 0.60, 0.25), alt=(0.85, 0.90, 0.40), speck=(0.10, 0.15, 0.45),
             cell=0.06, octaves=5, contrast=1.4, speck_cell=0.013, speck_amount=0.35),
    Material("book", base=(0.40, 0.12, 0.35), alt=(0.80, 0.55, 0.70), speck=(0.95, 0.95, 0.85),
             cell=0.06, octaves=6, contrast=1.3, speck_cell=0.012, speck_amount=0.3),
    Material("cabinet", base=(0.30, 0.42, 0.30), alt=(0.55, 0.62, 0.45), speck=(0.85, 0.80, 0.65),
             cell=0.15, octaves=6, contrast=1.2, speck_cell=0.03, speck_amount=0.3),
    Material("picture", base=(0.15, 0.35, 0.55), alt=(0.95, 0.70, 0.20), speck=(0.85, 0.15, 0.20),
             cell=0.18, octaves=6, contrast=1.6, speck_cell=0.04, speck_amount=0.4),
    Material("marker", base=(1, 1, 1), alt=(1, 1, 1), speck=(0, 0, 0), marker=True),
)


def material_index(name: str) -> int:
    return next(i for i, m in enumerate(MATERIALS) if m.name == name)
