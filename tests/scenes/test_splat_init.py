"""Backdrop seeding: support-plane seeds take the colour the views agree on and are dropped where they disagree;
the shell covers directions the fused points never reach."""
from __future__ import annotations

import numpy as np
import torch

from scenes.splats.seed_backdrop import BackdropConfig, backdrop_points
from spatial.cameras import Camera, look_at


def _ring(n=12, radius=2.0, height=1.2, size=64):
    cams = []
    for k in range(n):
        a = 2 * np.pi * k / n
        R, t = look_at(np.array([radius * np.cos(a), radius * np.sin(a), height]), np.array([0.0, 0.0, 0.6]))
        cams.append(Camera(f"{k:03d}", size, size, 50.0, 50.0, (size - 1) / 2, (size - 1) / 2, R, t))
    return cams


def _desk_images(cams, rng, noise_above_horizon: bool):
    """Images of a grey desk (rays hitting z = 0 within 1.5 m) under per-view random walls."""
    imgs = []
    for c in cams:
        v, u = np.mgrid[0:c.height, 0:c.width].astype(np.float64)
        d = np.stack([(u - c.cx) / c.fx, (v - c.cy) / c.fy, np.ones_like(u)], -1) @ c.R  # world ray directions
        s = -c.center[2] / np.where(np.abs(d[..., 2]) > 1e-9, d[..., 2], -1e-9)
        hit = c.center[:2] + s[..., None] * d[..., :2]
        on_desk = (s > 0) & (np.linalg.norm(hit, axis=-1) < 1.5)
        wall = rng.integers(0, 256, size=3) if noise_above_horizon else np.array([40, 40, 200])
        img = np.where(on_desk[..., None], np.array([150, 150, 150]), wall).astype(np.uint8)
        imgs.append(torch.from_numpy(img))
    return imgs


def test_desk_seeds_take_the_agreed_colour_and_skip_disagreeing_space():
    rng = np.random.default_rng(0)
    cams = _ring()
    imgs = _desk_images(cams, rng, noise_above_horizon=True)
    cfg = BackdropConfig(plane_points=4000, shell_points=2000, max_views=12)
    pts, cols = backdrop_points(cams, imgs, np.zeros(3), 0.0, cfg)
    desk = pts[:, 2] == 0.0
    assert desk.sum() > 300
    r = np.linalg.norm(pts[desk, :2], axis=1)
    assert np.percentile(r, 95) < 1.6  # seeds beyond the desk's edge see random walls: dropped
    assert np.allclose(cols[desk], 150 / 255, atol=0.02)
    shell = ~desk
    assert shell.sum() > 100
    assert np.linalg.norm(pts[shell], axis=1).min() > 2.0  # beyond the cameras


def test_consistent_wall_colour_reaches_the_shell():
    cams = _ring()
    imgs = _desk_images(cams, np.random.default_rng(1), noise_above_horizon=False)
    pts, cols = backdrop_points(cams, imgs, np.zeros(3), 0.0, BackdropConfig(plane_points=500, shell_points=2000))
    shell = pts[:, 2] > 0.5  # above the cameras' horizon: the walls
    blue = np.array([40, 40, 200]) / 255
    assert np.median(np.abs(cols[shell] - blue).max(1)) < 0.02
