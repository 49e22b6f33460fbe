"""Seed points where the fused cloud has none: the support surface and the far backdrop, coloured from the images.

Phone captures of an object on a plain desk give dense depth on the object only (plane sweep finds no
texture on white desks and walls), so three quarters of every image has no 3D point and densification has
to grow Gaussians into it from far away. Seeding a disk on the support plane and a shell around the capture,
each seed coloured by the median of its projections into the training images, gives those regions
Gaussians from the first step. Desk points whose colours disagree across views lie where there is no desk
and are dropped; the shell stands in for walls at unknown depth.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from spatial import Camera


@dataclass
class BackdropConfig:
    """How many seed points to place, and how far out."""

    plane_points: int = 20000
    shell_points: int = 12000
    plane_radius: float = 1.6   # times the largest horizontal camera distance from the focus
    shell_radius: float = 2.5   # times the largest camera distance from the focus
    max_views: int = 48         # views used to colour the seeds
    min_views: int = 4          # a desk seed must be seen by at least this many views
    shell_min_views: int = 2    # a shell seed must be seen by at least this many views
    colour_tol: float = 0.1     # a view agrees with a seed's median colour within this, per channel
    min_agree: float = 0.6      # desk seeds: fraction of their views that must agree


def _fibonacci_sphere(n: int) -> np.ndarray:
    """n roughly uniform unit directions."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(np.maximum(0.0, 1.0 - z * z))
    phi = np.pi * (3.0 - np.sqrt(5.0)) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def _sample_colours(points: np.ndarray, cameras: Sequence[Camera], images: Sequence[torch.Tensor],
                    tol: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median colour, fraction of views agreeing with it (all channels within `tol`) and view count of every
    point's projections (uint8 images)."""
    P = len(points)
    samples = np.full((len(cameras), P, 3), np.nan, np.float32)
    for v, (cam, img) in enumerate(zip(cameras, images)):
        x = points @ cam.R.T + cam.t
        z = x[:, 2]
        ok = z > 1e-6
        u = np.full(P, -1.0)
        w = np.full(P, -1.0)
        u[ok] = cam.fx * x[ok, 0] / z[ok] + cam.cx
        w[ok] = cam.fy * x[ok, 1] / z[ok] + cam.cy
        ui, wi = np.round(u).astype(np.int64), np.round(w).astype(np.int64)
        inside = ok & (ui >= 0) & (ui < cam.width) & (wi >= 0) & (wi < cam.height)
        arr = img.numpy()
        samples[v, inside] = arr[wi[inside], ui[inside]].astype(np.float32) / 255.0
    count = np.isfinite(samples[..., 0]).sum(0)
    with warnings.catch_warnings():  # unseen points: all-NaN medians are expected, not worth a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(samples, axis=0)
    agree = (np.abs(samples - med[None]).max(-1) <= tol).sum(0) / np.maximum(count, 1)
    return med, agree, count


def backdrop_points(cameras: Sequence[Camera], images: Sequence[torch.Tensor], focus: np.ndarray,
                    plane_z: float = 0.0, cfg: BackdropConfig | None = None, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(N,3) seed positions and (N,3) colours in [0,1] on the support plane z = plane_z and a far shell.

    `cameras` / `images` are the training views (images uint8 (H,W,3) at the cameras' size), in the
    bundle's aligned frame (+Z up); `focus` is the point the capture looks at.
    """
    cfg = cfg or BackdropConfig()
    rng = np.random.default_rng(seed)
    centres = np.stack([c.center for c in cameras])
    focus = np.asarray(focus, np.float64)
    horiz = float(np.linalg.norm(centres[:, :2] - focus[:2], axis=1).max())
    dist = float(np.linalg.norm(centres - focus, axis=1).max())
    pick = np.linspace(0, len(cameras) - 1, min(cfg.max_views, len(cameras))).round().astype(int)
    cams = [cameras[i] for i in pick]
    imgs = [images[i] for i in pick]

    r = cfg.plane_radius * horiz * np.sqrt(rng.random(cfg.plane_points))
    a = 2 * np.pi * rng.random(cfg.plane_points)
    disk = np.stack([focus[0] + r * np.cos(a), focus[1] + r * np.sin(a), np.full_like(r, plane_z)], 1)
    if np.mean(centres[:, 2] > plane_z) < 0.5:  # cameras below the plane: not a support surface
        disk = disk[:0]
    med, agree, cnt = _sample_colours(disk, cams, imgs, cfg.colour_tol)
    keep = (cnt >= cfg.min_views) & (agree >= cfg.min_agree)
    pts, cols = [disk[keep]], [med[keep]]

    dirs = _fibonacci_sphere(cfg.shell_points)
    shell = np.asarray([focus[0], focus[1], plane_z]) + cfg.shell_radius * dist * dirs
    # below the plane too: past a desk's edge the views look down at the floor
    med, _, cnt = _sample_colours(shell, cams, imgs, cfg.colour_tol)
    keep = cnt >= cfg.shell_min_views
    pts.append(shell[keep])
    cols.append(med[keep])
    return np.concatenate(pts), np.clip(np.concatenate(cols), 0.0, 1.0)
