"""`twin export`: a bundle's scene in other tools' formats (USD/USDZ, splat PLY, GLB, COLMAP, nerfstudio).

Without --out the exports are added to the bundle itself (atomically, with updating_bundle); with --out
they go to that directory, each file or folder written under a temporary name and renamed into place.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from scenes.export.usd import UsdExportOptions, package_usdz, write_stage_atomic
from spatial import (
    Bundle,
    BundlePaths,
    atomic_write_bytes,
    read_bundle,
    read_collision_mesh,
    read_points,
    updating_bundle,
)
from twin_kit import InputError, atomic_output, info, staging_dir, warn

FORMATS = ("usd", "usdz", "ply", "glb", "colmap", "nerfstudio")


def _load_splats(b: Bundle):
    from scenes.splats.gaussians import read_splats_ply

    return read_splats_ply(b.paths.splats) if b.paths.splats.exists() else None


def _load_mesh(b: Bundle):
    p = b.paths.find_collision()
    return read_collision_mesh(p) if p is not None else None


def _points(b: Bundle, g) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Fused points (or splat centres when the bundle has none) for COLMAP's points3D."""
    if b.paths.points.exists():
        return read_points(b.paths.points)
    if g is not None:
        from scenes.splats.gaussians import SH_C0

        rgb = np.clip(0.5 + SH_C0 * g.sh_dc.detach().cpu().numpy(), 0, 1)
        return g.means.detach().cpu().numpy(), (rgb * 255).astype(np.uint8)
    return None, None


def check_export_target(bundle_path: str | Path, out: str | Path | None) -> Path | None:
    """Refuse, before any work, what an export cannot write: an unreadable bundle, an --out that is a file,
    lies inside the bundle, or sits in a folder that cannot be written (the bundle's, without --out)."""
    from twin_kit import check_output_dir, check_parent_writable

    b = read_bundle(bundle_path)
    if out is None:
        check_parent_writable(b.root, "bundle")
        return None
    out = Path(out)
    real, root = out.resolve(), b.root.resolve()
    if real == root or root in real.parents:
        raise InputError(f"--out {out}: is inside the bundle; omit --out to add the exports to the bundle itself")
    return check_output_dir(out, merge=True, what="--out")


@contextmanager
def _target(bundle_root: Path, out: Path | None) -> Iterator[tuple[Path, dict | None]]:
    """Where to write: the bundle's staging copy (plus its manifest), or `out` itself (locked meanwhile; made
    if missing and removed again if the export fails while it is still empty)."""
    from twin_kit import destination_lock, make_parents, remove_empty

    if out is None:
        with updating_bundle(bundle_root) as (tmp, manifest):
            yield tmp, manifest
        return
    made = make_parents(out / "x")
    ok = False
    try:
        with destination_lock(out):
            yield out, None
        ok = True
    finally:
        if not ok:
            remove_empty(made)


def _replace_dir(built: Path, dest: Path) -> None:
    """Move a finished temporary directory onto `dest` (an existing one is removed after the rename)."""
    from twin_kit import replace_path

    replace_path(built, dest)


def _readable(path: Path) -> Path:
    """Give a file made by mkstemp/mkdtemp (mode 0600/0700) the usual 0644/0755 permissions."""
    os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return path


def _fresh_file(path: Path) -> Path:
    """Unlink a file before rewriting it (in a bundle staging dir it is a hard link to the live file)."""
    if path.exists() and not path.is_dir():
        path.unlink()
    return path


def _dynamic_samples(b: Bundle, n: int) -> tuple[object, list, float | None]:
    """The dynamic splats' canonical set, n time samples (time code k at normalised time k / (n - 1)) and the
    time codes per second that play them in capture time (None when the capture has no timestamps)."""
    from scenes.dynamic.model import load_dynamic

    dyn = load_dynamic(b.root)
    samples = [(k, dyn.at(k / max(n - 1, 1))) for k in range(n)]
    rate = (n - 1) / dyn.duration if dyn.time.units == "seconds" and dyn.duration > 0 and n > 1 else None
    return samples[0][1], samples, rate


def export_bundle(bundle_path: str | Path, formats: set[str], out: str | Path | None = None,
                  usd_opts: UsdExportOptions | None = None, time_samples: int = 0) -> dict:
    """Write the requested formats; returns {format: path written} (paths as they are after the export).

    `time_samples` > 0: the USD stage holds the dynamic splats (dynamic/), time-sampled that many times.
    """
    bad = set(formats) - set(FORMATS)
    if bad:
        raise ValueError(f"unknown export formats: {', '.join(sorted(bad))}")
    if not formats:
        raise InputError("nothing to export: pass one or more of --usd --usdz --ply --glb --colmap --nerfstudio")
    b = read_bundle(bundle_path)
    g = _load_splats(b)
    timing: dict = {}
    if time_samples > 0:
        if not {"usd", "usdz"} & formats:
            raise InputError("--time-samples applies to the USD stage: add --usd or --usdz")
        usd_g, samples, rate = _dynamic_samples(b, time_samples)
        timing = {"samples": samples, "codes_per_second": rate}
    mesh = _load_mesh(b)
    out_dir = Path(out) if out is not None else None
    final_root = out_dir if out_dir is not None else b.root
    written: dict[str, str] = {}
    if {"usd", "usdz"} & formats and not timing:
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
    if out_dir is not None:
        check_export_target(b.root, out_dir)
        existing = BundlePaths(out_dir).colmap_root
        if "colmap" in formats and (existing.exists() or existing.is_symlink()) and not (
                existing.is_dir() and BundlePaths(out_dir).colmap.parent.is_dir()):
            raise InputError(f"{existing}: exists and is not a COLMAP export; refusing to replace it")

    with _target(b.root, out_dir) as (dst, manifest):
        at, final = BundlePaths(dst), BundlePaths(final_root)
        if {"usd", "usdz"} & formats:
            files = write_stage_atomic(at.usd_stage, gaussians=usd_g if timing else g, mesh=mesh,
                                       cameras=b.cameras, opts=usd_opts or UsdExportOptions(),
                                       doc=f"Twin scene {b.root.name}", **timing)
            if "usdz" in formats:
                package_usdz(files[0], at.usdz)
                written["usdz"] = str(final.usdz)
            if "usd" in formats:
                written["usd"] = str(final.usd_stage)
                if len(files) > 1:
                    written["usd_splats"] = str(final_root / files[1].name)
            else:
                for f in files:
                    f.unlink()
        if "ply" in formats:
            if out_dir is None:
                info("splats.ply is already in the bundle (standard 3DGS layout); nothing to copy")
            else:
                atomic_write_bytes(at.splats, b.paths.splats.read_bytes())
                _readable(at.splats)
            written["ply"] = str(final.splats)
        if "glb" in formats:
            atomic_write_bytes(_fresh_file(at.collision_glb), mesh.export(file_type="glb"))
            _readable(at.collision_glb)
            written["glb"] = str(final.collision_glb)
        if "colmap" in formats:
            _export_colmap(b, g, dst)
            written["colmap"] = str(final.colmap_root)
        if "nerfstudio" in formats:
            _export_nerfstudio(b, dst, final_root)
            written["nerfstudio"] = str(final.transforms)
        if manifest is not None:
            manifest.setdefault("exports", {}).update(
                {k: os.path.relpath(v, b.root) for k, v in written.items()})
    return written


def _export_colmap(b: Bundle, g, dst: Path) -> Path:
    """The COLMAP model (binary) with image names relative to the bundle's image folder."""
    from spatial import write_colmap

    pts, cols = _points(b, g)
    cams = [dataclasses.replace(c, name=Path(c.image).name if c.image else c.name) for c in b.cameras]
    at = BundlePaths(dst)
    with staging_dir(at.colmap_root) as tmp:
        write_colmap(tmp.joinpath(*at.colmap.relative_to(at.colmap_root).parts), cams, pts, cols)  # tmp/sparse/0
        _replace_dir(_readable(tmp), at.colmap_root)
    return at.colmap_root


def _export_nerfstudio(b: Bundle, dst: Path, final_root: Path) -> None:
    """nerfstudio's transforms file, with image paths relative to where the file will finally live."""
    from spatial import write_transforms

    paths = [os.path.relpath(b.root / (c.image or c.name), final_root) for c in b.cameras]
    with atomic_output(BundlePaths(dst).transforms) as tmp:
        write_transforms(tmp, b.cameras, paths)
