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

import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from spatial.bundle import Bundle, read_bundle
from spatial.cameras import Camera, look_at
from spatial.errors import InputError

FRAMES_FORMAT = "twin-camera-frames"


# ---------------------------------------------------------------------------------------------- camera paths

def scene_centre(cameras: list[Camera]) -> np.ndarray | None:
    """Least-squares point closest to every camera's optical axis; None when the axes are near parallel."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for c in cameras:
        d = c.R[2]  # optical axis (camera +z) in world coordinates
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ c.center
    if len(cameras) < 2 or np.linalg.cond(A) > 1e6:
        return None
    return np.linalg.solve(A, b)


def _resized(cam: Camera, resolution: int) -> Camera:
    """The camera with its long side at `resolution` px (even sizes, for video encoders); 0 = unchanged."""
    s = 1.0 if resolution <= 0 else resolution / max(cam.width, cam.height)
    w, h = max(2, 2 * round(cam.width * s / 2)), max(2, 2 * round(cam.height * s / 2))
    sx, sy = w / cam.width, h / cam.height
    # OpenCV pixel centres at integers, as Camera.scaled: the pixel grid's edges scale, not its centres.
    return replace(cam, width=w, height=h, fx=cam.fx * sx, fy=cam.fy * sy, cx=(cam.cx + 0.5) * sx - 0.5,
                   cy=(cam.cy + 0.5) * sy - 0.5)


def orbit_cameras(bundle: Bundle, n_frames: int = 120, resolution: int = 480) -> list[Camera]:
    """A full circle around the scene centre at the capture's median horizontal radius and height (+Z up)."""
    cams = bundle.cameras
    if not cams:
        raise InputError(f"{bundle.root}: bundle has no cameras to place an orbit")
    centres = np.stack([c.center for c in cams])
    centre = scene_centre(cams)
    if centre is None:
        centre = centres.mean(0) + np.median([c.R[2] for c in cams], 0) * np.median(
            np.linalg.norm(centres - centres.mean(0), axis=1))
    rel = centres - centre
    radius = float(np.median(np.linalg.norm(rel[:, :2], axis=1))) or 1.0
    height = float(np.median(rel[:, 2]))
    start = float(np.arctan2(rel[0, 1], rel[0, 0]))
    intr = _resized(cams[0], resolution)
    out = []
    for i in range(n_frames):
        a = start + 2 * np.pi * i / max(n_frames, 1)
        eye = centre + np.array([radius * np.cos(a), radius * np.sin(a), height])
        R, t = look_at(eye, centre, up=(0.0, 0.0, 1.0))
        out.append(replace(intr, name=f"orbit_{i:05d}", R=R, t=t, image=None, timestamp=None))
    return out


def capture_path_cameras(bundle: Bundle, n_frames: int = 0, resolution: int = 480) -> list[Camera]:
    """Through the capture cameras in name order, interpolated to n_frames (0 = two per capture)."""
    from scipy.spatial.transform import Rotation, Slerp

    cams = sorted(bundle.cameras, key=lambda c: c.name)
    if len(cams) < 2:
        raise InputError(f"{bundle.root}: need at least 2 capture cameras for a 'frames' path")
    n = n_frames or 2 * len(cams) - 1
    key_t = np.arange(len(cams), dtype=np.float64)
    slerp = Slerp(key_t, Rotation.from_matrix(np.stack([c.R for c in cams])))
    centres = np.stack([c.center for c in cams])
    u = np.linspace(0, len(cams) - 1, n)
    Rs = slerp(u).as_matrix()
    out = []
    for k, (uu, R) in enumerate(zip(u, Rs)):
        c = np.array([np.interp(uu, key_t, centres[:, j]) for j in range(3)])
        intr = _resized(cams[min(int(round(uu)), len(cams) - 1)], resolution)
        out.append(replace(intr, name=f"frames_{k:05d}", R=R, t=-R @ c, image=None, timestamp=None))
    return out


def read_path_file(path: Path, resolution: int = 0, n_frames: int = 0) -> tuple[list[Camera], float | None]:
    """Cameras (and fps when given) of a camera-path JSON file; `resolution` > 0 resizes them; n_frames > 0
    resamples a viewer keyframe path to that many frames."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such camera-path file (or use orbit / frames)") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    fps = None
    try:
        if isinstance(doc, dict) and doc.get("format") == "twin-camera-path":
            from ._viewer_paths import path_cameras

            cams, fps = path_cameras(doc, n_frames or None), float(doc["fps"])
        else:
            frames = doc if isinstance(doc, list) else doc["frames"]
            fps = float(doc["fps"]) if isinstance(doc, dict) and "fps" in doc else None
            cams = [Camera.from_json({"name": f"path_{i:05d}", **f}) for i, f in enumerate(frames)]
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path}: not a camera path ({type(e).__name__}: {e})") from None
    if not cams:
        raise InputError(f"{path}: camera path holds no frames")
    return ([_resized(c, resolution) for c in cams] if resolution > 0 else cams), fps


def write_path_file(path: Path, cameras: list[Camera], fps: float = 30.0) -> None:
    """Save cameras as a "twin-camera-frames" JSON document (read back by read_path_file)."""
    frames = [{k: v for k, v in c.to_json().items() if k not in ("image", "timestamp")} for c in cameras]
    Path(path).write_text(json.dumps({"format": FRAMES_FORMAT, "version": 1, "fps": fps, "frames": frames},
                                     indent=1))


# ---------------------------------------------------------------------------------------------- rendering

def load_splat_params(bundle_root: Path, device: torch.device) -> dict[str, torch.Tensor]:
    """The bundle's splats.ply as the raw parameter dict that scenes.train.render_params takes."""
    from .gaussians import read_splats_ply
    from .train import PARAM_NAMES

    p = Path(bundle_root) / "splats.ply"
    if not p.exists():
        raise InputError(f"{bundle_root}: bundle has no splats.ply (run `twin splat` first)")
    g = read_splats_ply(p)
    return {n: t.to(device) for n, t in zip(PARAM_NAMES, g.tensors())}


@torch.no_grad()
def render_image(params: dict[str, torch.Tensor], cam: Camera, background: torch.Tensor | None = None,
                 backend: str = "auto") -> np.ndarray:
    """One view as an (H,W,3) uint8 array."""
    from .train import render_params

    img = render_params(params, cam, background=background, backend=backend).image
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def write_video(frames: Iterable[np.ndarray], out: Path, fps: float = 30.0) -> int:
    """Encode (H,W,3) uint8 frames to H.264 mp4 (yuv420p, even sizes), written atomically; returns frame count."""
    import av

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    n = 0
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
        tmp.unlink(missing_ok=True)
        raise InputError("camera path produced no frames")
    tmp.replace(out)
    return n


def render_path_video(bundle_root: Path, cameras: list[Camera], out: Path, fps: float = 30.0,
                      progress: Callable[[int, int], None] | None = None, device: str = "auto",
                      backend: str = "auto", background: str = "black") -> int:
    """Render the bundle's splats from each camera into an mp4; progress(done, total) after each frame."""
    from .train import resolve_device

    dev = resolve_device(device)
    params = load_splat_params(Path(bundle_root), dev)
    bg = torch.ones(3, device=dev) if background == "white" else torch.zeros(3, device=dev)

    def frames():
        for i, cam in enumerate(cameras):
            yield render_image(params, cam, bg, backend)
            if progress is not None:
                progress(i + 1, len(cameras))

    return write_video(frames(), Path(out), fps)


def render_frame_comparison(bundle_root: Path, frame: str, out: Path, resolution: int = 480,
                            device: str = "auto", backend: str = "auto", background: str = "black") -> dict:
    """Write a PNG with capture frame `frame`'s real image (left) and the splat render (right); returns
    {"frame", "psnr", "width", "height", "out"}."""
    import cv2

    from .losses import psnr
    from .train import load_image, resolve_device, scale_for, scaled_camera

    b = read_bundle(bundle_root)
    match = [c for c in b.cameras if c.name == frame or (c.image and Path(c.image).name == frame)]
    if not match:
        names = ", ".join(c.name for c in b.cameras[:5])
        raise InputError(f"{bundle_root}: no capture frame named {frame!r} (e.g. {names})")
    cam = scaled_camera(match[0], scale_for(match[0], resolution))
    dev = resolve_device(device)
    params = load_splat_params(b.root, dev)
    bg = torch.ones(3, device=dev) if background == "white" else torch.zeros(3, device=dev)
    rendered = render_image(params, cam, bg, backend)
    real = load_image(b.root / cam.image, cam.width, cam.height).numpy()
    score = psnr(torch.from_numpy(rendered).float() / 255, torch.from_numpy(real).float() / 255)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    gap = np.full((cam.height, 4, 3), 255, np.uint8)
    side = np.concatenate([real, gap, rendered], axis=1)
    if not cv2.imwrite(str(out), np.ascontiguousarray(side[:, :, ::-1])):
        raise InputError(f"{out}: could not write image (use a .png name)")
    return {"frame": cam.name, "psnr": score, "width": cam.width, "height": cam.height, "out": str(out)}


def path_for(bundle: Bundle, camera_path: str, n_frames: int, resolution: int) -> tuple[list[Camera], float | None]:
    """Cameras of `camera_path`: orbit, frames, or a JSON file."""
    if camera_path == "orbit":
        return orbit_cameras(bundle, n_frames or 120, resolution), None
    if camera_path == "frames":
        return capture_path_cameras(bundle, n_frames, resolution), None
    return read_path_file(Path(camera_path), resolution, n_frames)
