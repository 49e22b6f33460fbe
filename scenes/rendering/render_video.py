"""Render a bundle's splats along a camera path into an mp4 (PyAV), or one capture frame next to its photo.

Camera paths (`twin render --camera-path`):
  - "orbit": a circle around the scene centre (the point nearest to all capture cameras' optical axes) at the
    captures' median radius and height, +Z up, looking at the centre.
  - "frames": through the capture cameras in name order; centres interpolated linearly, rotations by slerp.
  - a JSON file, either the viewer's path editor document ({"format": "twin-camera-path", ...}, see
    scenes/_viewer_paths.py) or a list of explicit cameras, format "twin-camera-frames" version 1:
        {"format": "twin-camera-frames", "version": 1, "fps": 30,
         "frames": [{"world_to_camera": [[4x4 OpenCV]], "width": W, "height": H,
                     "fx": ..., "fy": ..., "cx": ..., "cy": ...}, ...]}
    Each frame is the same dict as an entry of a bundle's cameras.json (name/image optional), so a
    cameras.json file itself is a valid path; a bare JSON list of such frames is accepted too.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from spatial import BundlePaths, Camera, read_bundle
from twin_kit import InputError

# ---------------------------------------------------------------------------------------------- camera paths

# ---------------------------------------------------------------------------------------------- rendering

def load_splat_params(bundle_root: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """The bundle's splats.ply as the raw parameter dict that scenes.train.render_params takes."""
    from scenes.splats.gaussians import read_splats_ply
    from scenes.splats.train import PARAM_NAMES

    p = BundlePaths(Path(bundle_root)).splats
    if not p.exists():
        raise InputError(f"{bundle_root}: bundle has no splats.ply (run `twin splat` first)")
    g = read_splats_ply(p)
    return {n: t.to(device) for n, t in zip(PARAM_NAMES, g.tensors())}


@torch.no_grad()
def render_image(params: dict[str, torch.Tensor], cam: Camera, background: torch.Tensor | None = None,
                 backend: str = "auto") -> np.ndarray:
    """One view as an (H,W,3) uint8 array."""
    from scenes.splats.train import render_params

    img = render_params(params, cam, background=background, backend=backend).image
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def write_video(frames: Iterable[np.ndarray], out: Path, fps: float = 30.0) -> int:
    """Encode (H,W,3) uint8 frames to H.264 mp4 (yuv420p, even sizes), written atomically; returns frame count."""
    import av

    from twin_kit import atomic_output

    if not (np.isfinite(fps) and fps > 0):
        raise InputError(f"video frame rate must be positive, got {fps}")
    n = 0
    with atomic_output(Path(out)) as tmp:
        container = av.open(str(tmp), mode="w")
        try:
            stream = None
            for f in frames:
                f = np.ascontiguousarray(f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2])
                if stream is None:
                    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                    stream.width, stream.height = f.shape[1], f.shape[0]
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "18", "preset": "veryfast"}
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    container.mux(packet)
                n += 1
            if stream is not None:
                for packet in stream.encode():
                    container.mux(packet)
        finally:
            container.close()
        if n == 0:
            raise InputError("camera path produced no frames")
    return n


def dynamic_params(dyn, t: float) -> dict[str, torch.Tensor]:
    """A bundle's dynamic splats (scenes.dynamic.model.DynamicSplats) at normalised time t, as raw parameters."""
    from scenes.splats.train import PARAM_NAMES

    return dict(zip(PARAM_NAMES, dyn.at(t).tensors()))


def render_path_video(bundle_root: Path, cameras: list[Camera], out: Path, fps: float = 30.0,
                      progress: Callable[[int, int], None] | None = None, device: str = "auto",
                      backend: str = "auto", background: str = "black", timed: bool = False) -> int:
    """Render the bundle's splats from each camera into an mp4; progress(done, total) after each frame.

    `timed`: render the dynamic splats instead, frame k of n at normalised time k / (n - 1), so the video runs
    from the capture's first instant to its last while the camera follows the path.
    """
    from scenes.splats.train import resolve_device

    dev = resolve_device(device)
    dyn = None
    if timed:
        from scenes.dynamic.model import load_dynamic

        dyn = load_dynamic(Path(bundle_root), dev)
    params = None if timed else load_splat_params(Path(bundle_root), dev)
    bg = torch.ones(3, device=dev) if background == "white" else torch.zeros(3, device=dev)

    def frames():
        for i, cam in enumerate(cameras):
            p = params if dyn is None else dynamic_params(dyn, i / max(len(cameras) - 1, 1))
            yield render_image(p, cam, bg, backend)
            if progress is not None:
                progress(i + 1, len(cameras))

    return write_video(frames(), Path(out), fps)


def render_frame_comparison(bundle_root: Path, frame: str, out: Path, resolution: int = 480,
                            device: str = "auto", backend: str = "auto", background: str = "black",
                            timed: bool = False) -> dict:
    """Write a PNG with capture frame `frame`'s real image (left) and the splat render (right); returns
    {"frame", "psnr", "width", "height", "out"} (and "time" when `timed`: the dynamic splats at that frame's
    time)."""
    import cv2

    from scenes.splats.losses import psnr
    from scenes.splats.train import load_image, resolve_device, scale_for, scaled_camera

    b = read_bundle(bundle_root)
    match = [c for c in b.cameras if c.name == frame or (c.image and Path(c.image).name == frame)]
    if not match:
        names = ", ".join(c.name for c in b.cameras[:5])
        raise InputError(f"{bundle_root}: no capture frame named {frame!r} (e.g. {names})")
    cam = scaled_camera(match[0], scale_for(match[0], resolution))
    dev = resolve_device(device)
    t = None
    if timed:
        from scenes.dynamic.model import load_dynamic, time_axis

        dyn = load_dynamic(b.root, dev)
        stamp = match[0].timestamp
        t = (dyn.time.normalise(stamp) if dyn.time.units == "seconds" and stamp is not None
             else time_axis(b.cameras)[1][b.cameras.index(match[0])])
        params = dynamic_params(dyn, t)
    else:
        params = load_splat_params(b.root, dev)
    bg = torch.ones(3, device=dev) if background == "white" else torch.zeros(3, device=dev)
    rendered = render_image(params, cam, bg, backend)
    real = load_image(b.root / cam.image, cam.width, cam.height).numpy()
    score = psnr(torch.from_numpy(rendered).float() / 255, torch.from_numpy(real).float() / 255)
    out = Path(out)
    gap = np.full((cam.height, 4, 3), 255, np.uint8)
    side = np.concatenate([real, gap, rendered], axis=1)
    from twin_kit import atomic_output

    with atomic_output(out) as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(side[:, :, ::-1])):
            raise InputError(f"{out}: could not write image (use a .png name)")
    res = {"frame": cam.name, "psnr": score, "width": cam.width, "height": cam.height, "out": str(out)}
    return res if t is None else {**res, "time": t}


