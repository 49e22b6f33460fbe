"""Cameras from whatever a user calls a reference: a COLMAP model, a transforms.json, or a Twin bundle."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from spatial.bundle import (
    CAMERAS,
    TRANSFORMS,  # nerfstudio's own file name, which the bundle keeps
    read_cameras,
)
from spatial.cameras import Camera
from spatial.interop.colmap_io import find_colmap_model, read_colmap
from spatial.interop.nerfstudio_io import read_transforms
from twin_kit import InputError


def reference_kind(path: str | os.PathLike) -> str | None:
    """'bundle', 'transforms' or 'colmap' for a readable reference at `path`, else None.

    A Twin bundle wins over the exports it carries (its colmap/ and transforms.json)."""
    p = Path(path)
    if p.is_file():
        if p.name == CAMERAS:
            return "bundle"
        return "transforms" if p.suffix == ".json" else None
    if not p.is_dir():
        return None
    if (p / CAMERAS).exists():
        return "bundle"
    if find_colmap_model(p) is not None:
        return "colmap"
    if (p / TRANSFORMS).exists():
        return "transforms"
    return None


MAX_COORDINATE = 1e9  # no capture spans a million kilometres, in any units a reconstruction uses


def check_poses(cams: list[Camera], source: str | os.PathLike) -> list[Camera]:
    """The cameras, or InputError naming the first one whose pose or intrinsics are non-finite or absurd:
    a rotation that is not one (|R R^T - I| > 1e-3), a coordinate beyond MAX_COORDINATE, a focal length or
    image size that is not positive."""
    for c in cams:
        R, t = np.asarray(c.R, np.float64), np.asarray(c.t, np.float64)
        vals = np.concatenate([R.ravel(), t.ravel(), [c.fx, c.fy, c.cx, c.cy]])
        why = None
        if R.shape != (3, 3) or t.shape != (3,) or not np.isfinite(vals).all():
            why = "non-finite pose or intrinsics"
        elif np.abs(vals).max() > MAX_COORDINATE:
            why = f"a value of {np.abs(vals).max():.3g}"
        elif np.abs(R @ R.T - np.eye(3)).max() > 1e-3 or np.linalg.det(R) < 0:
            why = "its rotation is not a rotation matrix"
        elif not (c.fx > 0 and c.fy > 0 and c.width > 0 and c.height > 0):
            why = "non-positive focal length or image size"
        if why:
            raise InputError(f"{source}: camera {c.name} has an invalid pose ({why})")
    return cams


def read_reference(path: str | os.PathLike) -> list[Camera]:
    """Reference cameras, named by image basename so that frames match across sources; InputError for
    unreadable files and for non-finite or absurd poses (see check_poses)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    kind = reference_kind(p)
    if kind == "bundle":
        cams = read_cameras(p if p.is_dir() else p.parent)
        return check_poses([replace(c, name=os.path.basename(c.name)) for c in cams], p)
    if kind == "colmap":
        return check_poses(read_colmap(p, poses_only=True)[0], p)
    if kind == "transforms":
        return check_poses(read_transforms(p), p)
    raise InputError(f"{p}: not a COLMAP model (cameras/images .bin|.txt, or sparse/0), "
                     "a transforms.json, or a Twin bundle (cameras.json)")

