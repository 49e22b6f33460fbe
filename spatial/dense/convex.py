"""Convex pieces of a collision mesh, for physics engines that collide convex shapes only (MuJoCo's C core).

Connected components that are convex already (a box desk, a hull) are kept as their exact hulls; the rest, a
scan's open non-convex surface, is decimated and split by CoACD (approximate convex decomposition, with its
concavity threshold relative to the mesh's size). CoACD takes seconds to tens of seconds on a scan, so the
pieces are computed once per mesh and stored: in the bundle (its collision pieces file, swapped in atomically)
or, for a plain mesh file, in the user's cache ($TWIN_CACHE, else $XDG_CACHE_HOME/twin, else ~/.cache/twin).
They are tagged with a hash of the mesh and the settings, so an edited mesh or other settings make them stale.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spatial.bundle import BundleError, BundlePaths, updating_bundle
from spatial.bundle_files import CollisionPieces, read_collision_pieces, write_collision_pieces


@dataclass(frozen=True)
class ConvexConfig:
    """How the non-convex part of a mesh is split into convex pieces (the CoACD settings Twin sets)."""

    threshold: float = 0.1            # CoACD concavity threshold (mesh size = 1): lower = more, tighter pieces
    max_faces: int = 200_000          # decimate the non-convex part to this many triangles first (0 = never)
    max_hull_vertices: int = 64       # vertices of one piece at most (MuJoCo's collision cost grows with them)
    preprocess_resolution: int = 100  # CoACD's remeshing grid: an open scan becomes a solid this many voxels
                                      # across, so a thin desk's top moves up by about half a voxel
    seed: int = 0

    def params(self) -> dict:
        return {"method": "coacd", **dataclasses.asdict(self)}


# ---------------------------------------------------------------- components that are convex already

def _components(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Connected component label of every face (faces sharing a vertex are connected)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a, b = faces[:, [0, 1, 2]].ravel(), faces[:, [1, 2, 0]].ravel()
    g = coo_matrix((np.ones(len(a)), (a, b)), shape=(n_vertices, n_vertices))
    _, label = connected_components(g, directed=False)
    return label[faces[:, 0]]


def _hull_if_convex(v: np.ndarray, f: np.ndarray, rtol: float = 0.01) -> np.ndarray | None:
    """Hull vertices of a component whose surface is its own convex hull (same area, solid), else None.

    A closed surface enclosing a convex body has at least that body's area, so equal areas mean the
    component is convex (open or doubled surfaces fail the test)."""
    from scipy.spatial import ConvexHull, QhullError

    if len(f) < 4 or len(np.unique(f)) < 4:   # a closed solid has at least 4 faces and 4 vertices
        return None
    pts = v[np.unique(f)].astype(np.float64)
    try:
        hull = ConvexHull(pts)
    except (QhullError, ValueError):
        return None
    tri = v[f].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
    if hull.volume <= 0 or abs(area - hull.area) > rtol * hull.area:
        return None
    return pts[hull.vertices]


def convex_components(vertices: np.ndarray, faces: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Hull vertices of the mesh's convex connected components, and the faces of all the others."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if not len(f):
        return [], f
    label = _components(f, len(v))
    order = np.argsort(label, kind="stable")
    groups = np.split(f[order], np.nonzero(np.diff(label[order]))[0] + 1)
    hulls, loose = [], []
    for fc in groups:
        hull = _hull_if_convex(v, fc)
        (loose if hull is None else hulls).append(fc if hull is None else hull)
    return hulls, (np.concatenate(loose) if loose else np.zeros((0, 3), np.int64))


# ---------------------------------------------------------------- CoACD on the rest

def _decimate(v: np.ndarray, f: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse decimation (Open3D) to about `target` triangles."""
    import open3d as o3d

    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(f.astype(np.int32)))
    m = m.simplify_quadric_decimation(int(target))
    m.remove_degenerate_triangles()
    m.remove_unreferenced_vertices()
    return np.asarray(m.vertices, np.float64), np.asarray(m.triangles, np.int64)


def coacd_pieces(vertices: np.ndarray, faces: np.ndarray, cfg: ConvexConfig = ConvexConfig()) -> list[np.ndarray]:
    """Hull vertices of CoACD's convex pieces of the mesh (`faces` may use a subset of `vertices`)."""
    import coacd

    used, f = np.unique(np.asarray(faces, np.int64).reshape(-1, 3), return_inverse=True)
    v, f = np.asarray(vertices, np.float64)[used], f.reshape(-1, 3)
    if 0 < cfg.max_faces < len(f):
        v, f = _decimate(v, f, cfg.max_faces)
    coacd.set_log_level("off")  # its log goes to stdout, which carries the CLI's JSON
    parts = coacd.run_coacd(coacd.Mesh(v, f), threshold=cfg.threshold, preprocess_resolution=cfg.preprocess_resolution,
                            decimate=True, max_ch_vertex=cfg.max_hull_vertices, seed=cfg.seed)
    pieces = [np.asarray(pv, np.float64) for pv, _ in parts if len(pv) >= 4]
    if not pieces:
        from twin_kit import InputError

        raise InputError(f"CoACD made no convex pieces of a {len(f)}-triangle mesh; use --solver mujoco_warp")
    return pieces


def decompose(vertices: np.ndarray, faces: np.ndarray, cfg: ConvexConfig = ConvexConfig()) -> list[np.ndarray]:
    """Convex pieces (hull vertex arrays) covering a mesh: its convex components exactly, CoACD's for the rest."""
    hulls, loose = convex_components(vertices, faces)
    return hulls + (coacd_pieces(vertices, loose, cfg) if len(loose) else [])


# ---------------------------------------------------------------- computed once, stored

def mesh_sha256(vertices: np.ndarray, faces: np.ndarray) -> str:
    """Hash of a mesh's geometry (float64 vertices, int64 faces): what stored pieces are checked against."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(vertices, np.float64).tobytes())
    h.update(np.ascontiguousarray(faces, np.int64).tobytes())
    return h.hexdigest()


def pieces_cache_dir() -> Path:
    """Where the pieces of plain mesh files are kept: $TWIN_CACHE, else $XDG_CACHE_HOME/twin, else ~/.cache/twin."""
    root = os.environ.get("TWIN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "twin")
    return Path(root) / "convex_pieces"


def _coacd_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("coacd")
    except PackageNotFoundError:
        return "unknown"


def _stored(path: Path, digest: str, params: dict) -> tuple[list[np.ndarray] | None, str]:
    """(pieces, "") when `path` holds current pieces of the mesh, else (None, why not)."""
    if not path.exists():
        return None, ""
    try:
        cp = read_collision_pieces(path)
    except BundleError as e:
        return None, str(e)
    if cp.mesh_sha256 != digest:
        return None, "the collision mesh changed since they were computed"
    if cp.params != params:
        return None, "they were computed with other settings"
    return cp.pieces, ""


def _store(cp: CollisionPieces, path: Path, bundle: Path | None) -> Path | None:
    """Write the pieces (into the bundle atomically, or as a cache file); None, with a warning, if that fails."""
    from twin_kit import InputError, one_line, warn

    try:
        if bundle is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_collision_pieces(path, cp)
            return path
        with updating_bundle(bundle) as (tmp, manifest):
            dst = BundlePaths(tmp).collision_pieces
            dst.unlink(missing_ok=True)  # a hard link of the old file: replace it, never write through it
            write_collision_pieces(dst, cp)
            manifest.setdefault("timings", {})["collision_pieces"] = round(cp.seconds, 2)
            manifest.setdefault("metrics", {})["collision_pieces"] = len(cp.pieces)
        return path
    except (InputError, OSError) as e:
        warn(f"convex pieces not stored ({one_line(e)}); they will be computed again next time")
        return None


def stored_convex_pieces(vertices: np.ndarray, faces: np.ndarray, bundle: str | os.PathLike | None = None,
                         cfg: ConvexConfig = ConvexConfig(), label: str = "the scene mesh"
                         ) -> tuple[list[np.ndarray], str]:
    """Convex pieces of a mesh (its own units) and where they came from, computing and storing them if needed.

    `bundle`: the bundle the mesh is the collision mesh of (pieces live in it), else None (the user cache).
    The origin is "stored" (current pieces read back), "convex" (every component is convex: its exact hulls,
    nothing stored) or "computed" (CoACD ran now, with an info line, and the result was stored for next time).
    """
    from twin_kit import info

    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    digest, params = mesh_sha256(v, f), cfg.params()
    bundle = None if bundle is None else Path(bundle)
    path = BundlePaths(bundle).collision_pieces if bundle is not None else pieces_cache_dir() / f"{digest[:40]}.npz"
    pieces, stale = _stored(path, digest, params)
    if pieces is not None:
        return pieces, "stored"
    hulls, loose = convex_components(v, f)
    if not len(loose):
        return hulls, "convex"
    info(f"decomposing {label} ({len(loose):,} non-convex triangles) into convex pieces with CoACD, once"
         + (f" (stored pieces are stale: {stale})" if stale else "") + " ...")
    t0 = time.perf_counter()
    pieces = hulls + coacd_pieces(v, loose, cfg)
    seconds = time.perf_counter() - t0
    cp = CollisionPieces(pieces=pieces, mesh_sha256=digest, params=params, method_version=_coacd_version(),
                         seconds=seconds)
    where = _store(cp, path, bundle)
    info(f"{len(pieces)} convex pieces in {seconds:.1f} s" + (f", stored in {where}" if where else ""))
    return pieces, "computed"
