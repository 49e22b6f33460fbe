"""COLMAP models in and out: Twin cameras <-> pycolmap reconstructions (binary or text on disk).

Pixel convention: COLMAP (like nerfstudio) puts the centre of the top-left pixel at (0.5, 0.5), OpenCV and
Twin at (0, 0); principal points are shifted by 0.5 px across the boundary. Distortion is kept in OpenCV
order (k1 k2 p1 p2 [k3 k4 k5 k6]); COLMAP models without an OpenCV equivalent (fisheye, FOV, ...) are
refused unless only poses are wanted.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spatial.cameras import Camera
from twin_kit import InputError

PIXEL_SHIFT = 0.5  # COLMAP coordinate of the top-left pixel's centre

# COLMAP model -> (parameter names, function building [k1 k2 p1 p2 ...] from the params dict)
_RADIAL_MODELS = {
    "SIMPLE_PINHOLE": lambda p: [],
    "PINHOLE": lambda p: [],
    "SIMPLE_RADIAL": lambda p: [p["k"], 0.0, 0.0, 0.0],
    "RADIAL": lambda p: [p["k1"], p["k2"], 0.0, 0.0],
    "OPENCV": lambda p: [p["k1"], p["k2"], p["p1"], p["p2"]],
    "FULL_OPENCV": lambda p: [p[k] for k in ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")],
}


def camera_from_pycolmap(cam, cam_from_world, name: str, poses_only: bool = False) -> Camera:
    """A Twin Camera from a pycolmap Camera and its Rigid3d pose (world-to-camera)."""
    model = cam.model.name
    if model not in _RADIAL_MODELS and not poses_only:
        raise InputError(f"COLMAP camera model {model} (image {name}) has no OpenCV equivalent; "
                         "undistort the model with COLMAP first")
    names = [s.strip() for s in cam.params_info.split(",")]
    params = dict(zip(names, map(float, cam.params)))
    dist = _RADIAL_MODELS.get(model, lambda p: [])(params)
    if len(dist) == 8 and not any(dist[5:]):
        dist = dist[:5]  # a 5-coefficient OpenCV camera written as FULL_OPENCV
    M = np.asarray(cam_from_world.matrix(), dtype=np.float64)
    return Camera(name=os.path.basename(name), width=int(cam.width), height=int(cam.height),
                  fx=float(cam.focal_length_x), fy=float(cam.focal_length_y),
                  cx=float(cam.principal_point_x) - PIXEL_SHIFT, cy=float(cam.principal_point_y) - PIXEL_SHIFT,
                  R=M[:, :3].copy(), t=M[:, 3].copy(), dist=[float(d) for d in dist], image=name)


def pycolmap_camera(cam: Camera, camera_id: int):
    """The pycolmap Camera (PINHOLE, OPENCV or FULL_OPENCV by the number of distortion terms) for a Twin Camera."""
    import pycolmap

    d = [float(x) for x in cam.dist]
    if len(d) > 8:
        raise InputError(f"camera {cam.name}: {len(d)} distortion coefficients, COLMAP holds at most 8")
    cx, cy = cam.cx + PIXEL_SHIFT, cam.cy + PIXEL_SHIFT
    if not d:
        model, params = "PINHOLE", [cam.fx, cam.fy, cx, cy]
    elif len(d) <= 4:
        model, params = "OPENCV", [cam.fx, cam.fy, cx, cy] + d + [0.0] * (4 - len(d))
    else:
        model, params = "FULL_OPENCV", [cam.fx, cam.fy, cx, cy] + d + [0.0] * (8 - len(d))
    return pycolmap.Camera(model=model, width=int(cam.width), height=int(cam.height),
                           params=[float(p) for p in params], camera_id=int(camera_id))


def write_colmap(path_dir: str | os.PathLike, cameras: Sequence[Camera], points: np.ndarray | None = None,
                 colors: np.ndarray | None = None, text: bool = False) -> Path:
    """Write cameras (one COLMAP camera each, image name = camera name) and optional coloured points.

    Points get empty tracks (Twin has no per-image observations to export). `colors` are uint8 RGB or
    float in [0, 1]. Binary by default, `text=True` writes the .txt files. Returns the model directory.
    """
    import pycolmap

    out = Path(path_dir)
    out.mkdir(parents=True, exist_ok=True)
    rec = pycolmap.Reconstruction()
    for i, cam in enumerate(cameras, start=1):
        rec.add_camera_with_trivial_rig(pycolmap_camera(cam, i))
        image = pycolmap.Image(name=cam.name, camera_id=i, image_id=i)
        pose = pycolmap.Rigid3d(np.hstack([np.asarray(cam.R, np.float64), np.asarray(cam.t, np.float64)[:, None]]))
        rec.add_image_with_trivial_frame(image, pose)
    if points is not None and len(points):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if colors is None:
            cols = np.full((len(pts), 3), 128, dtype=np.uint8)
        else:
            cols = np.asarray(colors)
            if cols.dtype != np.uint8:
                cols = np.clip(np.round(cols.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
            cols = cols.reshape(-1, 3)
        track = pycolmap.Track()
        for p, c in zip(pts, cols):
            rec.add_point3D(p, track, c)
    if text:
        rec.write_text(str(out))
    else:
        rec.write_binary(str(out))
    return out


def is_colmap_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / f"cameras{e}").exists() and (p / f"images{e}").exists() for e in (".bin", ".txt"))


def find_colmap_model(path: str | os.PathLike) -> Path | None:
    """The model directory at `path`, or in its `sparse/0`, `sparse`, `colmap`, `colmap/sparse/0` subfolders."""
    p = Path(path)
    for cand in (p, p / "sparse" / "0", p / "sparse", p / "colmap", p / "colmap" / "sparse" / "0"):
        if is_colmap_dir(cand):
            return cand
    return None


def read_colmap(path: str | os.PathLike, poses_only: bool = False
                ) -> tuple[list[Camera], np.ndarray, np.ndarray]:
    """Posed cameras (sorted by name), points (N, 3) float64 and colours (N, 3) uint8 of a COLMAP model.

    `path` is the model directory or a folder holding it in sparse/0. With `poses_only`, cameras whose
    distortion model has no OpenCV equivalent are kept with their focal length and principal point only.
    """
    import pycolmap

    model = find_colmap_model(path)
    if model is None:
        raise InputError(f"{path}: no COLMAP model (cameras/images .bin or .txt) here or in sparse/0")
    try:
        rec = pycolmap.Reconstruction(str(model))
    except Exception as e:  # pycolmap raises plain RuntimeErrors for damaged files
        raise InputError(f"{model}: unreadable COLMAP model ({str(e).splitlines()[0] if str(e) else e})") from None
    cams = [camera_from_pycolmap(im.camera, im.cam_from_world(), im.name, poses_only)
            for im in rec.images.values() if im.has_pose]
    cams.sort(key=lambda c: c.name)
    pts = rec.points3D
    xyz = np.array([p.xyz for p in pts.values()], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in pts.values()], dtype=np.uint8).reshape(-1, 3)
    return cams, xyz, rgb
