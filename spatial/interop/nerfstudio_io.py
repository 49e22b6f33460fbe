"""nerfstudio `transforms.json` in and out (also read by instant-ngp-style and gsplat tools).

nerfstudio stores camera-to-world matrices in the OpenGL camera convention (x right, y up, z backward),
so the camera axes y and z are flipped relative to Twin's OpenCV cameras; its pixel centres sit at +0.5
(like COLMAP), so principal points are shifted by 0.5 px. Intrinsics are written per frame.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spatial.bundle import TRANSFORMS  # nerfstudio's own file name, which the bundle keeps
from spatial.cameras import Camera
from twin_kit import InputError

PIXEL_SHIFT = 0.5
_GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # flips camera y and z; its own inverse
_DIST_KEYS = ("k1", "k2", "p1", "p2", "k3")  # OpenCV order of Camera.dist


def _c2w_gl(cam: Camera) -> np.ndarray:
    R, t = np.asarray(cam.R, np.float64), np.asarray(cam.t, np.float64)
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ t
    return c2w @ _GL_FROM_CV


def write_transforms(path: str | os.PathLike, cameras: Sequence[Camera],
                     image_paths: Sequence[str] | None = None) -> Path:
    """Write transforms.json (`path` is the file, or a directory to hold transforms.json).

    `image_paths` are the frames' file paths relative to the JSON's folder (default: each camera's
    `image`, else its `name`). Distortion beyond k1 k2 p1 p2 k3 cannot be expressed and is refused.
    """
    p = Path(path)
    if p.is_dir() or p.suffix != ".json":
        p = p / TRANSFORMS
    if image_paths is not None and len(image_paths) != len(cameras):
        raise ValueError(f"{len(image_paths)} image paths for {len(cameras)} cameras")
    frames = []
    for k, cam in enumerate(cameras):
        if len(cam.dist) > len(_DIST_KEYS):
            raise InputError(f"camera {cam.name}: {len(cam.dist)} distortion terms, transforms.json holds 5")
        f = {"file_path": str(image_paths[k]) if image_paths is not None else (cam.image or cam.name),
             "transform_matrix": _c2w_gl(cam).tolist(),
             "fl_x": float(cam.fx), "fl_y": float(cam.fy),
             "cx": float(cam.cx) + PIXEL_SHIFT, "cy": float(cam.cy) + PIXEL_SHIFT,
             "w": int(cam.width), "h": int(cam.height)}
        f.update({key: float(v) for key, v in zip(_DIST_KEYS, cam.dist)})
        if cam.timestamp is not None:
            f["timestamp"] = float(cam.timestamp)
        frames.append(f)
    has_dist = any(len(c.dist) for c in cameras)
    data = {"camera_model": "OPENCV" if has_dist else "PINHOLE", "frames": frames}
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=1))
    return p


def read_transforms(path: str | os.PathLike) -> list[Camera]:
    """Cameras of a transforms.json (file, or directory holding one); per-frame intrinsics override global ones.

    Camera names are the basenames of `file_path`; `image` keeps the path as written.
    """
    p = Path(path)
    if p.is_dir():
        p = p / TRANSFORMS
    if not p.exists():
        raise InputError(f"{p}: no such transforms.json")
    try:
        data = json.loads(p.read_text())
        frames = data["frames"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{p}: not a nerfstudio transforms.json ({e})") from None
    model = str(data.get("camera_model", "OPENCV")).upper()
    if "FISHEYE" in model or model == "EQUIRECTANGULAR":
        raise InputError(f"{p}: camera model {model} has no OpenCV pinhole equivalent")
    cams = []
    for i, f in enumerate(frames):
        g = {**data, **f}
        try:
            fx = float(g.get("fl_x", g.get("fl_y")))
            fy = float(g.get("fl_y", fx))
            w, h = int(g["w"]), int(g["h"])
            cx = float(g.get("cx", w / 2.0)) - PIXEL_SHIFT
            cy = float(g.get("cy", h / 2.0)) - PIXEL_SHIFT
            M = np.asarray(f["transform_matrix"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{p}: frame {i} lacks intrinsics or pose ({e})") from None
        if M.shape == (3, 4):
            M = np.vstack([M, [0.0, 0.0, 0.0, 1.0]])
        if M.shape != (4, 4) or not np.isfinite(M).all():
            raise InputError(f"{p}: frame {i} transform_matrix is not a finite 4x4 matrix")
        c2w = M @ _GL_FROM_CV
        R = c2w[:3, :3].T.copy()
        t = -R @ c2w[:3, 3]
        present = [k for k in _DIST_KEYS if k in g]
        dist = [float(g.get(k, 0.0)) for k in _DIST_KEYS[: _DIST_KEYS.index(present[-1]) + 1]] if present else []
        if "k4" in g and float(g["k4"]) != 0.0:
            raise InputError(f"{p}: frame {i} uses k4, which Twin's OpenCV pinhole cameras do not hold")
        fp = str(f["file_path"])
        ts = f.get("timestamp")
        cams.append(Camera(name=os.path.basename(fp), width=w, height=h, fx=fx, fy=fy, cx=cx, cy=cy, R=R, t=t,
                           dist=dist, timestamp=None if ts is None else float(ts), image=fp))
    return cams
