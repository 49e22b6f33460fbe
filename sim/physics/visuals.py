"""Robot visual meshes: what the viewer and the sensors draw, while physics collides with the collision shapes.

Each `<visual>` of a URDF link is read with trimesh (COLLADA through pycollada, STL, OBJ; primitives built),
split by the colour its file gives every triangle (else the URDF material's, else a light grey), decimated
once to `FILE_TRIANGLES` and cached on disk (`cache_dir()`), since the shipped meshes hold 60k-460k triangles
per robot. `add_visual_shapes` puts each link's parts on the robot's ModelBuilder as one visual-only shape
(VISIBLE, no collision, no mass; several colours become a palette texture), so Newton's SensorCamera traces
it and every solver ignores it; `show_visuals_only` hides the collision shapes from renderers. The viewer
reads the same shapes back (`mesh_parts`), so it draws exactly what the sensors trace.
"""
from __future__ import annotations

import hashlib
import io
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from twin_kit import tmul

FILE_TRIANGLES = 3000           # triangle budget of one visual mesh file after decimation
CREASE_DEG = 35.0               # normals are smooth across edges flatter than this, split at sharper ones
DEFAULT_COLOR = (0.88, 0.89, 0.92)  # sRGB of a visual with no colour in its file or its URDF material
VISUAL_LABEL = "visual"         # label prefix of the visual-only shapes in the Newton model
_VERSION = 1                    # bump when the cached parts change meaning


@dataclass(frozen=True)
class VisualPart:
    """One colour of one visual element, in its link's frame (metres)."""

    vertices: np.ndarray         # (V, 3) float32
    faces: np.ndarray            # (F, 3) int32
    normals: np.ndarray          # (V, 3) float32, vertices split at creases so CAD edges stay sharp
    color: tuple[float, float, float]  # sRGB in [0, 1]


def cache_dir() -> Path:
    """Where decimated visual meshes are kept: $TWIN_CACHE, else $XDG_CACHE_HOME/twin, else ~/.cache/twin."""
    root = os.environ.get("TWIN_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "twin")
    return Path(root) / "robot_visuals"


# ---------------------------------------------------------------------- reading one mesh file


def _file_colors(mesh) -> np.ndarray | None:
    """(F, 3) uint8 sRGB colour of every face as the file gives it (material or face/vertex colours), or None."""
    vis = mesh.visual
    if vis.kind == "texture":
        mat = getattr(vis, "material", None)
        c = getattr(mat, "main_color", None) if mat is not None else None
        return None if c is None else np.tile(np.asarray(c, np.uint8)[:3], (len(mesh.faces), 1))
    if vis.kind in ("face", "vertex"):
        return np.asarray(vis.face_colors, np.uint8)[:, :3]
    return None


def _decimate(v: np.ndarray, f: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse decimation (Open3D) of a triangle soup to about `target` triangles."""
    import open3d as o3d

    m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v.astype(np.float64)),
                                  o3d.utility.Vector3iVector(f.astype(np.int32)))
    m = m.merge_close_vertices(1e-7)
    m = m.simplify_quadric_decimation(int(target))
    m.remove_degenerate_triangles()
    m.remove_unreferenced_vertices()
    return np.asarray(m.vertices), np.asarray(m.triangles)


def _shaded(v: np.ndarray, f: np.ndarray):
    """Vertices, faces and normals with vertices split along creases sharper than CREASE_DEG."""
    import trimesh

    m = trimesh.Trimesh(v, f, process=True)
    m.remove_unreferenced_vertices()
    s = trimesh.graph.smooth_shade(m, angle=np.radians(CREASE_DEG), facet_minarea=None)
    return (np.asarray(s.vertices, np.float32), np.asarray(s.faces, np.int32),
            np.asarray(s.vertex_normals, np.float32))


def _read_mesh_file(path: Path, scale: np.ndarray, budget: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                             np.ndarray | None]]:
    """(vertices, faces, normals, sRGB uint8 colour or None) per colour of a mesh file, decimated to `budget`."""
    import trimesh

    loaded = trimesh.load(str(path), force="scene", process=False)
    meshes = [m for m in loaded.dump() if len(getattr(m, "faces", ())) > 0]
    groups: dict[tuple | None, list[tuple[np.ndarray, np.ndarray]]] = {}
    for m in meshes:
        colors = _file_colors(m)
        v = np.asarray(m.vertices, np.float64) * scale
        f = np.asarray(m.faces, np.int64)
        if colors is None:
            groups.setdefault(None, []).append((v, f))
            continue
        uniq, inv = np.unique(colors, axis=0, return_inverse=True)
        for i, c in enumerate(uniq):
            groups.setdefault(tuple(int(x) for x in c), []).append((v, f[inv.ravel() == i]))
    total = sum(len(f) for parts in groups.values() for _, f in parts)
    out = []
    for key, parts in groups.items():
        base, vs, fs = 0, [], []
        for v, f in parts:
            vs.append(v)
            fs.append(f + base)
            base += len(v)
        v, f = np.concatenate(vs), np.concatenate(fs)
        target = max(12, int(round(budget * len(f) / max(total, 1))))
        if len(f) > target:
            v, f = _decimate(v, f, target)
        if not len(f):
            continue
        v, f, n = _shaded(v, f)
        out.append((v, f, n, None if key is None else np.asarray(key, np.uint8)))
    return out


def _cache_key(path: Path, scale: np.ndarray, budget: int) -> str:
    st = path.stat()
    text = f"{_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{np.round(scale, 9).tolist()}|{budget}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@lru_cache(maxsize=256)
def _mesh_file_parts(path: str, scale: tuple[float, float, float], budget: int):
    """`_read_mesh_file` through the on-disk cache (and this process's memory)."""
    from twin_kit import atomic_write_file

    p, s = Path(path), np.asarray(scale, np.float64)
    cached = cache_dir() / f"{p.stem}-{_cache_key(p, s, budget)}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as z:
                n = int(z["count"])
                return [(z[f"v{i}"], z[f"f{i}"], z[f"n{i}"], z[f"c{i}"] if z[f"c{i}"].size else None)
                        for i in range(n)]
        except (OSError, KeyError, ValueError):
            pass  # unreadable: rebuild it
    parts = _read_mesh_file(p, s, budget)
    arrays = {"count": np.array(len(parts))}
    for i, (v, f, n, c) in enumerate(parts):
        arrays.update({f"v{i}": v, f"f{i}": f, f"n{i}": n, f"c{i}": np.zeros(0, np.uint8) if c is None else c})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_file(cached, buf.getvalue())
    except OSError:
        pass  # a read-only cache only costs the decimation next time
    return parts


# ---------------------------------------------------------------------- URDF visuals


def _floats(text: str | None, default: str) -> np.ndarray:
    return np.array([float(x) for x in (text or default).split()], np.float64)


def _origin(el) -> np.ndarray:
    """The pose (position + quaternion xyzw) of a URDF element's <origin>."""
    from sim.physics.robots import rpy_quat

    o = el.find("origin")
    if o is None:
        return np.array([0, 0, 0, 0, 0, 0, 1.0])
    return np.concatenate([_floats(o.get("xyz"), "0 0 0"), rpy_quat(_floats(o.get("rpy"), "0 0 0"))])


def _material_color(el, named: dict[str, tuple]) -> tuple[float, float, float] | None:
    m = el.find("material")
    if m is None:
        return None
    c = m.find("color")
    if c is not None and c.get("rgba"):
        return tuple(float(x) for x in c.get("rgba").split()[:3])
    return named.get(m.get("name"))


def _primitive(geom) -> tuple[np.ndarray, np.ndarray] | None:
    """Vertices and faces of a URDF box, cylinder or sphere (trimesh's generators), else None."""
    import trimesh

    if geom.find("box") is not None:
        m = trimesh.creation.box(extents=_floats(geom.find("box").get("size"), "1 1 1"))
    elif geom.find("cylinder") is not None:
        c = geom.find("cylinder")
        m = trimesh.creation.cylinder(radius=float(c.get("radius", 1)), height=float(c.get("length", 1)), sections=24)
    elif geom.find("sphere") is not None:
        m = trimesh.creation.icosphere(subdivisions=2, radius=float(geom.find("sphere").get("radius", 1)))
    else:
        return None
    return np.asarray(m.vertices), np.asarray(m.faces)


def _posed(parts, pose: np.ndarray, color) -> list[VisualPart]:
    from twin_kit import qrot

    out = []
    for v, f, n, c in parts:
        rgb = tuple(float(x) / 255.0 for x in c) if c is not None else (color or DEFAULT_COLOR)
        out.append(VisualPart(vertices=(qrot(pose[3:], v.astype(np.float64)) + pose[:3]).astype(np.float32),
                              faces=f.astype(np.int32), normals=qrot(pose[3:], n.astype(np.float64)).astype(np.float32),
                              color=tuple(float(x) for x in rgb)))
    return out


def urdf_visuals(urdf: str, budget: int = FILE_TRIANGLES) -> dict[str, list[VisualPart]]:
    """Every link's visual parts (link frame), from a URDF whose mesh paths are absolute file names."""
    root = ET.fromstring(urdf)
    named = {}
    for m in root.iter("material"):
        c = m.find("color")
        if m.get("name") and c is not None and c.get("rgba"):
            named[m.get("name")] = tuple(float(x) for x in c.get("rgba").split()[:3])
    out: dict[str, list[VisualPart]] = {}
    for link in root.findall("link"):
        parts: list[VisualPart] = []
        for vis in link.findall("visual"):
            geom = vis.find("geometry")
            if geom is None:
                continue
            pose, color = _origin(vis), _material_color(vis, named)
            mesh = geom.find("mesh")
            if mesh is not None:
                path = Path(mesh.get("filename", "").removeprefix("file://"))
                if not path.is_file():
                    continue  # a missing visual file: the link keeps showing its collision shapes
                scale = tuple(float(x) for x in _floats(mesh.get("scale"), "1 1 1"))
                parts += _posed(_mesh_file_parts(str(path), scale, budget), pose, color)
            else:
                prim = _primitive(geom)
                if prim is not None:
                    parts += _posed([(*_shaded(*prim), None)], pose, color)
        if parts:
            out[link.get("name")] = parts
    return out


# ---------------------------------------------------------------------- Newton shapes


PALETTE_TEXELS = 4  # texels per palette colour: bilinear sampling at a block's centre returns it exactly


def link_mesh(parts: list[VisualPart]):
    """One Newton mesh of a link's parts: a single colour as the mesh colour, several as a palette texture
    (one row of colour blocks, each vertex's UV at its colour's block), so a link costs the ray tracer one
    shape however many colours it has."""
    import newton

    colors = sorted({p.color for p in parts})
    v = np.concatenate([p.vertices for p in parts])
    n = np.concatenate([p.normals for p in parts])
    starts = np.cumsum([0] + [len(p.vertices) for p in parts])[:-1]
    f = np.concatenate([p.faces + s for p, s in zip(parts, starts, strict=True)])
    if len(colors) == 1:
        return newton.Mesh(v, f.ravel(), normals=n, compute_inertia=False, is_solid=False, color=colors[0])
    k, t = len(colors), PALETTE_TEXELS
    tex = np.repeat(np.repeat((np.array(colors) * 255 + 0.5).astype(np.uint8)[None], t, axis=1), t, axis=0)
    index = np.concatenate([np.full(len(p.vertices), colors.index(p.color)) for p in parts])
    uvs = np.stack([(index + 0.5) / k, np.full(len(index), 0.5)], 1).astype(np.float32)
    return newton.Mesh(v, f.ravel(), normals=n, uvs=uvs, texture=tex, compute_inertia=False, is_solid=False,
                       color=(1.0, 1.0, 1.0))


def mesh_parts(mesh, color=DEFAULT_COLOR) -> list[VisualPart]:
    """A Newton mesh split back into its colours (a `link_mesh` palette; else one part of the mesh's colour,
    or `color` when it has none)."""
    v = np.asarray(mesh.vertices, np.float32)
    f = np.asarray(mesh.indices, np.int32).reshape(-1, 3)
    n = np.asarray(mesh.normals, np.float32) if mesh.normals is not None else np.zeros_like(v)
    tex, uvs = getattr(mesh, "texture", None), getattr(mesh, "uvs", None)
    if not isinstance(tex, np.ndarray) or uvs is None:
        own = getattr(mesh, "color", None)
        return [VisualPart(v, f, n, tuple(float(c) for c in (color if own is None else own)))]
    k = tex.shape[1] // PALETTE_TEXELS
    index = np.clip((np.asarray(uvs)[:, 0] * k).astype(int), 0, k - 1)
    out = []
    for i in range(k):
        sel = index[f[:, 0]] == i
        if not sel.any():
            continue
        used, inv = np.unique(f[sel], return_inverse=True)
        rgb = tuple(float(c) / 255.0 for c in tex[0, i * PALETTE_TEXELS, :3])
        out.append(VisualPart(v[used], inv.reshape(-1, 3).astype(np.int32), n[used], rgb))
    return out


def add_visual_shapes(builder, visuals: dict[str, list[VisualPart]], urdf: str, base_xform, body_start: int = 0
                      ) -> int:
    """Add `visuals` (per URDF link) to a builder that imported `urdf` (fixed joints collapsed) at `base_xform`
    as visual-only shapes, one per link, on the bodies the links were merged into; returns how many.

    A link joined to a body by fixed joints rides on that body at the chain's offset; a link merged into the
    world with a fixed base sits at `base_xform` times its offset from the root."""
    import newton
    import warp as wp

    from sim.physics.robots import fixed_link_offset

    names = {lbl.split("/")[-1]: i for i, lbl in enumerate(builder.body_label) if i >= body_start}
    cfg = newton.ModelBuilder.ShapeConfig(density=0.0, has_shape_collision=False, has_particle_collision=False,
                                          is_visible=True, collision_group=0, collision_filter_parent=False)
    base = np.asarray(base_xform, np.float64)
    for link, parts in visuals.items():
        anchor, offset = fixed_link_offset(urdf, link)
        body = names.get(anchor, -1)
        pose = offset if body >= 0 else tmul(base, offset)
        mesh = link_mesh(parts)
        builder.add_shape_mesh(body, xform=wp.transform(wp.vec3(*pose[:3]), wp.quat(*pose[3:])), mesh=mesh, cfg=cfg,
                               color=mesh.color, label=f"{VISUAL_LABEL}/{link}")
    return len(visuals)


def show_visuals_only(builder, shape_start: int = 0) -> None:
    """Renderers see each body's visual shapes: a body (or the world, -1) with any hides its colliders; one
    with none shows its colliders instead (e.g. MJCF geoms that are both, or a link without a visual)."""
    from newton import ShapeFlags

    vis, col, site = int(ShapeFlags.VISIBLE), int(ShapeFlags.COLLIDE_SHAPES), int(ShapeFlags.SITE)
    shapes = range(shape_start, builder.shape_count)
    flags = builder.shape_flags
    has_visual = {builder.shape_body[s] for s in shapes if flags[s] & vis and not flags[s] & (col | site)}
    for s in shapes:
        if flags[s] & col:
            flags[s] = (flags[s] & ~vis) if builder.shape_body[s] in has_visual else (flags[s] | vis)


def add_robot_visuals(builder, spec, base_xform, shape_start: int = 0, body_start: int = 0) -> None:
    """Give a robot just imported into `builder` its visual meshes (URDF robots: decimated, cached) and make
    renderers see those instead of the collision shapes. MJCF robots (imported with their visual geoms) only
    get the second step: their bodies without visual geoms show their colliders, which MJCF files draw too."""
    if spec.source != "aloha":
        from sim.physics.robots import urdf_source

        source = urdf_source(spec)
        add_visual_shapes(builder, urdf_visuals(source), source, base_xform, body_start)
    show_visuals_only(builder, shape_start)
