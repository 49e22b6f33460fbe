"""`twin export`: a bundle's scene in other tools' formats (USD/USDZ, splat PLY, GLB, COLMAP, nerfstudio).

Without --out the exports are added to the bundle itself (atomically, with updating_bundle); with --out
they go to that directory, each file or folder written under a temporary name and renamed into place.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from spatial.bundle import Bundle, atomic_write_bytes, read_bundle, updating_bundle
from spatial.cli_tools import info, warn
from spatial.errors import InputError

from .export_usd import UsdExportOptions, package_usdz, write_stage_atomic

FORMATS = ("usd", "usdz", "ply", "glb", "colmap", "nerfstudio")
USD_NAME = "scene.usda"


def _load_splats(b: Bundle):
    from .gaussians import read_splats_ply

    return read_splats_ply(b.path("splats.ply")) if b.has("splats.ply") else None


def _load_mesh(b: Bundle):
    from ._viewer_layers import find_collision_mesh, read_mesh

    p = find_collision_mesh(b.root)
    return read_mesh(p) if p is not None else None


def _points(b: Bundle, g) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Fused points (or splat centres when the bundle has none) for COLMAP's points3D."""
    if b.has("points.ply"):
        from ._viewer_layers import read_points_ply

        return read_points_ply(b.path("points.ply"))
    if g is not None:
        from .gaussians import SH_C0

        rgb = np.clip(0.5 + SH_C0 * g.sh_dc.detach().cpu().numpy(), 0, 1)
        return g.means.detach().cpu().numpy(), (rgb * 255).astype(np.uint8)
    return None, None


@contextmanager
def _target(bundle_root: Path, out: Path | None) -> Iterator[tuple[Path, dict | None]]:
    """Where to write: the bundle's staging copy (plus its manifest), or `out` itself."""
    if out is None:
        with updating_bundle(bundle_root) as (tmp, manifest):
            yield tmp, manifest
    else:
        out.mkdir(parents=True, exist_ok=True)
        yield out, None


def _replace_dir(built: Path, dest: Path) -> None:
    """Move a finished temporary directory onto `dest` (an existing one is removed after the rename)."""
    old = None
    if dest.exists() or dest.is_symlink():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(built, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def _readable(path: Path) -> Path:
    """Give a file made by mkstemp/mkdtemp (mode 0600/0700) the usual 0644/0755 permissions."""
    os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return path


def _fresh_file(path: Path) -> Path:
    """Unlink a file before rewriting it (in a bundle staging dir it is a hard link to the live file)."""
    if path.exists() and not path.is_dir():
        path.unlink()
    return path


def export_bundle(bundle_path: str | Path, formats: set[str], out: str | Path | None = None,
                  usd_opts: UsdExportOptions | None = None) -> dict:
    """Write the requested formats; returns {format: path written} (paths as they are after the export)."""
    bad = set(formats) - set(FORMATS)
    if bad:
        raise ValueError(f"unknown export formats: {', '.join(sorted(bad))}")
    if not formats:
        raise InputError("nothing to export: pass one or more of --usd --usdz --ply --glb --colmap --nerfstudio")
    b = read_bundle(bundle_path)
    g = _load_splats(b)
    mesh = _load_mesh(b)
    out_dir = Path(out) if out is not None else None
    final_root = out_dir if out_dir is not None else b.root
    written: dict[str, str] = {}
    if {"usd", "usdz"} & formats:
        if g is None and mesh is None:
            raise InputError(f"{b.root}: no splats.ply and no collision mesh, nothing to put in a USD stage")
        if g is None:
            warn(f"{b.root}: no splats.ply; the USD stage holds only the collision mesh and cameras")
    if "ply" in formats and g is None:
        raise InputError(f"{b.root}: no splats.ply to export (train splats first with `twin splat`)")
    if "glb" in formats and mesh is None:
        raise InputError(f"{b.root}: no collision mesh (collision.*) to export as GLB")
    if ("colmap" in formats or "nerfstudio" in formats) and not b.cameras:
        raise InputError(f"{b.root}: no cameras.json, cannot export COLMAP or nerfstudio cameras")

    with _target(b.root, out_dir) as (dst, manifest):
        if {"usd", "usdz"} & formats:
            files = write_stage_atomic(dst / USD_NAME, gaussians=g, mesh=mesh, cameras=b.cameras,
                                       opts=usd_opts or UsdExportOptions(), doc=f"Twin scene {b.root.name}")
            if "usdz" in formats:
                package_usdz(files[0], dst / "scene.usdz")
                written["usdz"] = str(final_root / "scene.usdz")
            if "usd" in formats:
                written["usd"] = str(final_root / USD_NAME)
                if len(files) > 1:
                    written["usd_splats"] = str(final_root / files[1].name)
            else:
                for f in files:
                    f.unlink()
        if "ply" in formats:
            if out_dir is None:
                info("splats.ply is already in the bundle (standard 3DGS layout); nothing to copy")
            else:
                atomic_write_bytes(dst / "splats.ply", b.path("splats.ply").read_bytes())
                _readable(dst / "splats.ply")
            written["ply"] = str(final_root / "splats.ply")
        if "glb" in formats:
            atomic_write_bytes(_fresh_file(dst / "collision.glb"), mesh.export(file_type="glb"))
            _readable(dst / "collision.glb")
            written["glb"] = str(final_root / "collision.glb")
        if "colmap" in formats:
            _export_colmap(b, g, dst)
            written["colmap"] = str(final_root / "colmap")
        if "nerfstudio" in formats:
            _export_nerfstudio(b, dst, final_root)
            written["nerfstudio"] = str(final_root / "transforms.json")
        if manifest is not None:
            manifest.setdefault("exports", {}).update(
                {k: os.path.relpath(v, b.root) for k, v in written.items()})
    return written


def _export_colmap(b: Bundle, g, dst: Path) -> Path:
    """colmap/sparse/0 (binary) with image names relative to the bundle's image folder."""
    from spatial.colmap_io import write_colmap

    pts, cols = _points(b, g)
    cams = [dataclasses.replace(c, name=Path(c.image).name if c.image else c.name) for c in b.cameras]
    tmp = Path(tempfile.mkdtemp(prefix=".colmap.tmp-", dir=dst))
    try:
        write_colmap(tmp / "sparse" / "0", cams, pts, cols)
        _replace_dir(_readable(tmp), dst / "colmap")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dst / "colmap"


def _export_nerfstudio(b: Bundle, dst: Path, final_root: Path) -> None:
    """transforms.json whose image paths are relative to where the file will finally live."""
    from spatial.nerfstudio_io import write_transforms

    paths = [os.path.relpath(b.root / (c.image or c.name), final_root) for c in b.cameras]
    fd, tmp = tempfile.mkstemp(prefix=".transforms.", suffix=".json", dir=dst)
    os.close(fd)
    try:
        write_transforms(tmp, b.cameras, paths)
        os.replace(_readable(Path(tmp)), _fresh_file(dst / "transforms.json"))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
