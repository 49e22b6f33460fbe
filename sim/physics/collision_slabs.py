"""Convex slabs of a concave collision mesh, for robots whose grippers MuJoCo would otherwise fill in.

MuJoCo collides with a mesh's convex hull, and the hull of a curved gripper jaw (the SO-101's jaws hang from
their servo mounts at an angle) covers the space between the jaws, so a grasped object is pushed out. Cut
into slabs across its long axis, each slab's hull follows the jaw closely. Slabs are written once as STL
files in the cache (`$TWIN_CACHE/robot_collision`), which the URDF then names instead of the mesh.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

_VERSION = 1


def _cache_root() -> Path:
    from sim.physics.visuals import cache_dir

    return cache_dir().parent / "robot_collision"


def slab_files(path: str | Path, axis: int, count: int) -> list[Path]:
    """STL files of the convex hulls of `count` slabs of the mesh at `path`, cut across `axis` (0, 1, 2)."""
    import trimesh

    from twin_kit import atomic_write_file

    p = Path(path)
    st = p.stat()
    key = hashlib.sha1(f"{_VERSION}|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}|{axis}|{count}".encode()
                       ).hexdigest()[:16]
    index = _cache_root() / f"{p.stem}-{key}.txt"
    if index.is_file():
        files = [index.parent / name for name in index.read_text().split()]
        if files and all(f.is_file() for f in files):
            return files
    index.parent.mkdir(parents=True, exist_ok=True)
    out = [index.parent / f"{p.stem}-{key}-{i}.stl" for i in range(count)]
    mesh = trimesh.load(str(p), force="mesh", process=True)
    v = np.asarray(mesh.vertices, dtype=np.float64)
    e = v[np.asarray(mesh.edges_unique)]                   # (E, 2, 3)
    a = v[:, axis]
    edges = np.linspace(a.min(), a.max(), count + 1)
    cuts = [_crossings(e, axis, c) for c in edges]
    written = []
    for i in range(count):
        inside = v[(a >= edges[i]) & (a <= edges[i + 1])]
        pts = np.concatenate([inside, cuts[i], cuts[i + 1]])
        if len(pts) < 4 or np.ptp(pts, axis=0).min() < 1e-6:
            continue
        hull = trimesh.convex.convex_hull(pts)
        atomic_write_file(out[i], trimesh.exchange.stl.export_stl(hull))
        written.append(out[i])
    atomic_write_file(index, " ".join(f.name for f in written).encode())
    return written


def _crossings(edges: np.ndarray, axis: int, c: float) -> np.ndarray:
    """Points where mesh edges (E, 2, 3) cross the plane at coordinate `c` of `axis`."""
    a0, a1 = edges[:, 0, axis], edges[:, 1, axis]
    hit = (a0 - c) * (a1 - c) < 0
    t = (c - a0[hit]) / (a1[hit] - a0[hit])
    return edges[hit, 0] + t[:, None] * (edges[hit, 1] - edges[hit, 0])
