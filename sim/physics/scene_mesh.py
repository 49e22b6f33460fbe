"""The static scene for simulation: a triangle mesh in metres, +Z up, from a bundle or any mesh file.

A bundle gives `collision.*` in scene units plus its manifest's scale (metric or arbitrary) and detected
support plane; a plain GLB / OBJ / PLY / STL / USD file is taken as metres (GLB and USD convert their own
up axis to +Z). The support surface the robot stands on comes from the manifest or is estimated here.
The mesh's convex pieces (what MuJoCo's C core collides with) are made on first use: read from the bundle,
else computed with CoACD once and stored in it (a plain file's go to the user cache; see spatial's convex).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatial import BundlePaths
from twin_kit import InputError

MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf", ".stl", ".off", ".usd", ".usda", ".usdc", ".usdz")


@dataclass
class SceneMesh:
    """Scene geometry in metres, +Z up, and the surface a robot should stand on."""

    vertices: np.ndarray              # (V, 3) float32
    faces: np.ndarray                 # (F, 3) int32
    support_height: float             # z of the support surface (table top or floor)
    support_center: np.ndarray        # (2,) xy on the support surface where a robot goes by default
    source: str
    metres_per_unit: float = 1.0
    bundle: Path | None = None        # the bundle the mesh came from: where its convex pieces are stored
    file_mesh: tuple | None = field(default=None, repr=False)   # (vertices, faces) as read, before scaling
    pieces: list | None = field(default=None, repr=False)      # convex pieces in metres (see convex_pieces)
    pieces_origin: str | None = None  # "stored", "convex" (exact hulls of convex parts) or "computed"

    def trimesh(self):
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, process=False)

    def convex_pieces(self, cfg=None) -> list[np.ndarray]:
        """Convex pieces (hull vertex arrays, metres) whose union is the scene, made once per mesh and reused.

        Read from the bundle (or the user cache for a mesh without a bundle) when current for `cfg` (a
        spatial.ConvexConfig, default settings when None); else the mesh is decomposed (convex parts kept
        exactly, CoACD for the rest) and the result stored for the next run."""
        if self.pieces is None:
            from spatial import ConvexConfig, stored_convex_pieces

            v, f = self.file_mesh if self.file_mesh is not None else (self.vertices, self.faces)
            scale = self.metres_per_unit if self.file_mesh is not None else 1.0
            label = f"{self.bundle}'s collision mesh" if self.bundle is not None else Path(self.source).name
            pieces, self.pieces_origin = stored_convex_pieces(v, f, bundle=self.bundle, cfg=cfg or ConvexConfig(),
                                                              label=label)
            self.pieces = [np.asarray(p, np.float64) * scale for p in pieces]
        return self.pieces


def _load_usd(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All UsdGeom meshes of a stage, world transforms applied, converted to metres and +Z up."""
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.Open(str(path))
    if stage is None:
        raise InputError(f"{path}: not a readable USD stage")
    mpu = UsdGeom.GetStageMetersPerUnit(stage) or 1.0
    y_up = UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    cache = UsdGeom.XformCache()
    verts, faces, base = [], [], 0
    for prim in stage.Traverse():
        if not prim.IsA(UsdGeom.Mesh):
            continue
        m = UsdGeom.Mesh(prim)
        pts = np.asarray(m.GetPointsAttr().Get() or [], dtype=np.float64).reshape(-1, 3)
        counts = np.asarray(m.GetFaceVertexCountsAttr().Get() or [], dtype=np.int64)
        idx = np.asarray(m.GetFaceVertexIndicesAttr().Get() or [], dtype=np.int64)
        if not len(pts) or not len(counts):
            continue
        T = np.asarray(cache.GetLocalToWorldTransform(prim), dtype=np.float64)  # row-vector convention
        pts = pts @ T[:3, :3] + T[3, :3]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        tris = [np.stack([idx[s + 0].repeat(c - 2), idx[s + 1:s + c - 1], idx[s + 2:s + c]], 1)
                for s, c in zip(starts, counts) if c >= 3]
        if not tris:
            continue
        verts.append(pts)
        faces.append(np.concatenate(tris) + base)
        base += len(pts)
    if not verts:
        raise InputError(f"{path}: the USD stage holds no mesh")
    v = np.concatenate(verts) * mpu
    if y_up:
        v = v[:, [0, 2, 1]] * np.array([1.0, -1.0, 1.0])  # +Y up -> +Z up (x, y, z) -> (x, -z, y)
    return v, np.concatenate(faces)


def load_mesh_file(path: str | Path, up_axis: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Vertices (in the file's units, +Z up) and triangles of any mesh file trimesh or USD can read."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such mesh file")
    suffix = path.suffix.lower()
    if suffix.startswith(".usd"):
        return _load_usd(path)
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:  # trimesh raises many types for corrupt files
        raise InputError(f"{path}: cannot read mesh ({type(e).__name__}: {e})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError(f"{path}: the file holds no triangles")
    v = np.asarray(mesh.vertices, dtype=np.float64)
    up = up_axis.lower()
    if up == "auto":
        up = "y" if suffix in (".glb", ".gltf") else "z"  # glTF is +Y up by specification
    if up == "y":
        v = v[:, [0, 2, 1]] * np.array([1.0, -1.0, 1.0])
    return v, np.asarray(mesh.faces, dtype=np.int64)


def find_collision_file(root: Path) -> Path:
    """The bundle's collision mesh file, or a one-line error saying there is none."""
    p = BundlePaths(root).find_collision()
    if p is not None and p.is_file():
        return p
    raise InputError(f"{root}: scene has no collision mesh (collision.ply/.obj/.glb/...); "
                     f"build one first or pass a mesh file as the scene")


def estimate_support(vertices: np.ndarray, faces: np.ndarray, min_area: float = 0.09,
                     max_tilt_deg: float = 10.0, bin_size: float = 0.01) -> tuple[float, np.ndarray]:
    """Height and xy centre of the highest large upward-facing surface (a table top), else the floor.

    Upward faces are binned by height (area-weighted); a bin counts as a surface when it and its neighbours
    hold at least `min_area` m^2 (or half the largest, for small scenes).
    """
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = np.linalg.norm(n, axis=1)
    ok = area2 > 0
    cos_up = np.where(ok, n[:, 2] / np.maximum(area2, 1e-30), 0.0)
    up = cos_up > np.cos(np.radians(max_tilt_deg))
    if not up.any():
        return float(vertices[:, 2].min()), vertices[:, :2].mean(0)
    cz = tri[up, :, 2].mean(1)
    ca = 0.5 * area2[up]
    cxy = tri[up, :, :2].mean(1)
    z0 = cz.min()
    b = np.floor((cz - z0) / bin_size).astype(np.int64)
    hist = np.bincount(b, weights=ca)
    smooth = hist + np.concatenate([[0], hist[:-1]]) + np.concatenate([hist[1:], [0]])
    big = np.flatnonzero(smooth >= min(min_area, 0.5 * smooth.max()))
    best = int(big.max()) if len(big) else int(np.argmax(smooth))
    sel = np.abs(b - best) <= 1
    w = ca[sel]
    height = float(np.sum(cz[sel] * w) / w.sum())
    center = (cxy[sel] * w[:, None]).sum(0) / w.sum()
    return height, center


def load_scene(source: str | Path, scale: float | None = None, up_axis: str = "auto") -> SceneMesh:
    """The scene mesh of a bundle directory or a mesh file, in metres with its support surface.

    A bundle whose scale is arbitrary needs `scale` (metres per scene unit); a metric bundle uses 1 unless
    `scale` overrides it. A mesh file is taken as metres unless `scale` says otherwise. Convex pieces are
    stored in scene units (a bundle's, for any `scale`) and made on the first `convex_pieces()` call.
    """
    source = Path(source)
    plane = bundle = None
    if source.is_dir():
        from spatial import read_bundle

        b = read_bundle(source)
        path = find_collision_file(b.root)
        if scale is None:
            if not b.metric:
                raise InputError("scene scale is arbitrary; pass --scale (metres per scene unit)")
            scale = 1.0
        v, f = load_mesh_file(path, up_axis="z" if up_axis == "auto" else up_axis)
        plane = b.manifest.get("support_plane")
        bundle = b.root
    elif source.exists():
        v, f = load_mesh_file(source, up_axis)
        scale = 1.0 if scale is None else scale
    else:
        raise InputError(f"{source}: no such scene bundle or mesh file")
    if not (scale > 0 and np.isfinite(scale)):
        raise InputError(f"--scale must be a positive number of metres per scene unit, got {scale}")
    file_mesh = (v, f)
    v = v * float(scale)
    if not np.isfinite(v).all():
        raise InputError(f"{source}: collision mesh has non-finite vertices")
    height, center = estimate_support(v, f)
    if plane and plane.get("found", True) and "normal" in plane:
        nrm = np.asarray(plane["normal"], dtype=np.float64)
        d = float(plane.get("offset", 0.0)) * scale
        if nrm[2] > 0.9:
            c = np.asarray(plane.get("centroid", [*center, 0.0]), dtype=np.float64)[:2] * (
                scale if "centroid" in plane else 1.0)
            height = float(-(d + nrm[:2] @ c) / nrm[2])
            center = c
    return SceneMesh(vertices=v.astype(np.float32), faces=f.astype(np.int32), support_height=height,
                     support_center=np.asarray(center, dtype=np.float64), source=str(source),
                     metres_per_unit=float(scale), bundle=bundle, file_mesh=file_mesh)
