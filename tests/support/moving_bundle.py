"""A tiny bundle of a moving scene for dynamic-splat tests: a coloured back wall and a red ball that crosses it
while a camera pans, rendered with Twin's rasterizer; cameras carry timestamps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spatial.bundle import finalize_manifest, new_manifest, staged_bundle, write_cameras
from spatial.bundle_files import write_points
from spatial.cameras import Camera, look_at

W, H = 48, 36
TRAVEL = 0.5  # metres the ball moves along +x over the capture


def scene_gaussians(seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Raw parameters of the wall (a grid of Gaussians at z = 3, colours in bands) and the ball, plus a mask
    of the ball's Gaussians; the ball sits at its time-0 place."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.linspace(-1.6, 1.6, 17), np.linspace(-1.2, 1.2, 13))
    wall = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, 3.0)], 1)
    band = ((gx.ravel() * 2.5).astype(int) + (gy.ravel() * 2.5).astype(int)) % 3
    wall_rgb = np.array([[0.2, 0.5, 0.9], [0.9, 0.8, 0.2], [0.3, 0.8, 0.4]])[band]
    ball = rng.normal(0, 0.06, (40, 3)) + np.array([-0.4, 0.0, 2.2])
    means = np.concatenate([wall, ball])
    rgb = np.concatenate([wall_rgb, np.tile([[0.9, 0.1, 0.1]], (len(ball), 1))])
    n = len(means)
    scales = np.concatenate([np.full((len(wall), 3), 0.12), np.full((len(ball), 3), 0.05)])
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    params = {"means": f(means), "quats": f(np.tile([1.0, 0, 0, 0], (n, 1))), "log_scales": f(np.log(scales)),
              "opacity_logits": f(np.full(n, 4.0)), "sh_dc": f((rgb - 0.5) / 0.28209479177387814),
              "sh_rest": torch.zeros(n, 0, 3)}
    moving = torch.zeros(n, dtype=torch.bool)
    moving[len(wall):] = True
    return params, moving


def cameras(n: int) -> list[Camera]:
    cams = []
    for i in range(n):
        eye = np.array([0.5 * np.sin(2 * np.pi * i / n), 0.15 * np.cos(2 * np.pi * i / n), 0.0])
        R, t = look_at(eye, np.array([0.0, 0.0, 3.0]), up=(0, -1, 0))
        cams.append(Camera(f"{i:04d}", W, H, 38.0, 38.0, (W - 1) / 2, (H - 1) / 2, R=R, t=t,
                           image=f"images/{i:04d}.png", timestamp=0.1 * i))
    return cams


def make_moving_bundle(dest: Path, frames: int = 24, gains: np.ndarray | None = None) -> Path:
    """Write the bundle: frame i at time i / (frames - 1), the ball moved TRAVEL * time along x; with `gains`
    (frames,), frame i's image is scaled by gains[i] (auto exposure) before quantisation."""
    import cv2

    from scenes.splats.train import render_params

    params, moving = scene_gaussians()
    cams = cameras(frames)
    with staged_bundle(dest, overwrite=True) as tmp:
        (tmp / "images").mkdir()
        for i, cam in enumerate(cams):
            p = dict(params)
            p["means"] = params["means"] + moving[:, None] * torch.tensor([TRAVEL * i / (frames - 1), 0.0, 0.0])
            img = render_params(p, cam, backend="warp").image
            img = (img if gains is None else img * float(gains[i])).clamp(0, 1)
            cv2.imwrite(str(tmp / cam.image), (img.numpy()[:, :, ::-1] * 255 + 0.5).astype(np.uint8))
        write_cameras(tmp, cams)
        rgb = (0.5 + 0.28209479177387814 * params["sh_dc"].numpy()).clip(0, 1)
        write_points(tmp / "points.ply", params["means"].numpy(), (rgb * 255).astype(np.uint8))
        m = new_manifest(input="moving test bundle")
        m["scale"] = {"metric": True, "source": "test", "metres_per_unit": 1.0}
        finalize_manifest(tmp, m)
    return Path(dest)
