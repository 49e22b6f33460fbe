"""Cameras from whatever a user calls a reference: a COLMAP model, a transforms.json, or a Twin bundle."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

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


def read_reference(path: str | os.PathLike) -> list[Camera]:
    """Reference cameras, named by image basename so that frames match across sources."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    kind = reference_kind(p)
    if kind == "bundle":
        cams = read_cameras(p if p.is_dir() else p.parent)
        return [replace(c, name=os.path.basename(c.name)) for c in cams]
    if kind == "colmap":
        return read_colmap(p, poses_only=True)[0]
    if kind == "transforms":
        return read_transforms(p)
    raise InputError(f"{p}: not a COLMAP model (cameras/images .bin|.txt, or sparse/0), "
                     "a transforms.json, or a Twin bundle (cameras.json)")

