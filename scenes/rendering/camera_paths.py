"""Cameras for rendering: the rasterizer's pixel convention, and camera paths (orbit, capture, keyframed).

Path JSON (format "twin-camera-path", version 1): fps, seconds, width, height and keyframes, each with the
viewer pose (position, wxyz of camera-to-world, OpenCV axes), vertical fov in radians and the OpenCV
world_to_camera 4x4 that Twin's cameras use. `path_cameras` turns it into per-frame Camera objects.
Twin's cameras put pixel centres at integers (OpenCV); the rasterizer (gsplat's convention) at x + 0.5.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from spatial import Bundle, Camera, look_at
from twin_kit import InputError

PATH_FORMAT = "twin-camera-path"


def path_document(keyframes: list[dict], fps: float = 30.0, seconds: float = 5.0,
                  width: int | None = None, height: int | None = None) -> dict:
    """A path JSON document; output size defaults to 640 px wide at the first keyframe's aspect."""
    aspect = keyframes[0]["aspect"] if keyframes else 16 / 9
    w = 2 * round(int(width or 640) / 2)
    h = int(height or 2 * round(w / aspect / 2))
    return {"format": PATH_FORMAT, "version": 1, "fps": float(fps), "seconds": float(seconds), "width": w,
            "height": h, "keyframes": keyframes}


def path_cameras(doc: dict, n_frames: int | None = None) -> list[Camera]:
    """Per-frame OpenCV cameras along a path: Catmull-Rom positions, piecewise slerp rotations, linear fov."""
    import viser.transforms as tf

    kfs = doc["keyframes"]
    if not kfs:
        raise ValueError("camera path has no keyframes")
    n = int(n_frames or max(round(doc["fps"] * doc["seconds"]), 1))
    W, H = int(doc["width"]), int(doc["height"])
    P = np.array([k["position"] for k in kfs], np.float64)
    Q = [tf.SO3(np.asarray(k["wxyz"], np.float64)) for k in kfs]
    F = np.array([k["fov_y"] for k in kfs], np.float64)
    m = len(kfs)
    out = []
    for f in range(n):
        u = 0.0 if n == 1 or m == 1 else f / (n - 1) * (m - 1)
        i = min(int(np.floor(u)), m - 2) if m > 1 else 0
        a = u - i
        j = min(i + 1, m - 1)
        p = _catmull_rom(P[max(i - 1, 0)], P[i], P[j], P[min(j + 1, m - 1)], a)
        rot = (Q[i] @ tf.SO3.exp(a * (Q[i].inverse() @ Q[j]).log())).as_matrix()
        fov = F[i] + a * (F[j] - F[i])
        fy = H / 2 / np.tan(fov / 2)
        R = rot.T
        out.append(Camera(name=f"path_{f:05d}", width=W, height=H, fx=fy, fy=fy, cx=(W - 1) / 2,
                          cy=(H - 1) / 2, R=R, t=-R @ p))
    return out


def _catmull_rom(p0, p1, p2, p3, a: float) -> np.ndarray:
    a2, a3 = a * a, a * a * a
    return 0.5 * (2 * p1 + (p2 - p0) * a + (2 * p0 - 5 * p1 + 4 * p2 - p3) * a2 + (3 * p1 - p0 - 3 * p2 + p3) * a3)


FRAMES_FORMAT = "twin-camera-frames"


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
            from scenes.viewer._paths import path_cameras

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


def path_for(bundle: Bundle, camera_path: str, n_frames: int, resolution: int) -> tuple[list[Camera], float | None]:
    """Cameras of `camera_path`: orbit, frames, or a JSON file."""
    if camera_path == "orbit":
        return orbit_cameras(bundle, n_frames or 120, resolution), None
    if camera_path == "frames":
        return capture_path_cameras(bundle, n_frames, resolution), None
    return read_path_file(Path(camera_path), resolution, n_frames)


def raster_K(K: np.ndarray) -> np.ndarray:
    """Intrinsics moved from OpenCV's pixel centres at integers to the rasterizer's (gsplat's) at x + 0.5."""
    K = np.array(K, dtype=np.float64)
    K[0, 2] += 0.5
    K[1, 2] += 0.5
    return K


def camera_tensors(cam: Camera, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(viewmat 4x4, K 3x3) float32 tensors of a camera, K moved from OpenCV's pixel centres at integers to
    the rasterizer's (gsplat's) centres at x + 0.5."""
    return (torch.as_tensor(cam.world_to_cam, dtype=torch.float32, device=device),
            torch.as_tensor(raster_K(cam.K), dtype=torch.float32, device=device))
