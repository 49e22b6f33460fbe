"""A small desk scene for task tests: a 1.6 x 1.2 m table top at 0.75 m with clutter on it, as a metric (or
arbitrary-scale) scene bundle holding only its collision mesh and manifest."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

TABLE_Z = 0.75


# the desk's parts as axis-aligned boxes: (centre, extents)
PARTS = [((0.0, 0.0, TABLE_Z / 2), (1.6, 1.2, TABLE_Z)),              # table
         ((0.0, 0.0, -0.01), (4.0, 4.0, 0.02)),                      # floor
         ((0.3, 0.25, TABLE_Z + 0.05), (0.2, 0.15, 0.1)),            # a box on the table
         ((0.2, -0.3, TABLE_Z + 0.15), (0.1, 0.1, 0.3))]             # a tall block on the table


def desk_mesh() -> trimesh.Trimesh:
    """Table (top at TABLE_Z) on a floor, a box and a tall block on the table, all one mesh."""
    parts = []
    for centre, extents in PARTS:
        b = trimesh.creation.box(extents=extents)
        b.apply_translation(centre)
        parts.append(b)
    return trimesh.util.concatenate(parts)


def desk_distance(points: np.ndarray) -> np.ndarray:
    """Exact distance of points (N, 3) to the desk (0 inside a part)."""
    d = [np.linalg.norm(np.maximum(np.abs(points - c) - 0.5 * np.asarray(e), 0.0), axis=1) for c, e in PARTS]
    return np.min(d, axis=0)


def desk_bundle(root: Path, metric: bool = True) -> Path:
    """Write the desk as a bundle at `root` (support plane: the table top) and return `root`."""
    from spatial.bundle import BundlePaths, finalize_manifest, new_manifest

    root.mkdir(parents=True)
    m = new_manifest(input="test")
    m["scale"] = {"metric": metric, "source": "test" if metric else "arbitrary",
                  "metres_per_unit": 1.0 if metric else None}
    m["support_plane"] = {"normal": [0.0, 0.0, 1.0], "offset": -TABLE_Z, "centroid": [0.0, 0.0, TABLE_Z],
                          "found": True}
    desk_mesh().export(BundlePaths(root).collision)
    finalize_manifest(root, m)
    return root


def desk_scene():
    """The desk as a sim SceneMesh (metres, support = the table top), without writing a bundle."""
    from sim import SceneMesh

    mesh = desk_mesh()
    return SceneMesh(vertices=np.asarray(mesh.vertices, np.float32), faces=np.asarray(mesh.faces, np.int32),
                     support_height=TABLE_Z, support_center=np.zeros(2), source="desk")
