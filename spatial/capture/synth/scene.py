"""The synthetic room: floor, walls, ceiling, rug, table with objects and a printed ArUco marker, in metres, +Z up.

Everything is one triangle mesh with a material id per face and a normal per face corner (smooth on the
mug and the ball, flat elsewhere), so that one ray cast per pixel gives position, normal and material.
The layout is fixed; the seed changes textures, trajectory and noise (see `trajectory`, `textures`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import trimesh

from spatial.capture.synth.geometry import rows_at
from spatial.capture.synth.motion import MovingPart
from spatial.capture.synth.textures import MATERIALS, material_index

ROOM = (4.0, 4.0, 2.5)  # x, y, z extents; floor at z = 0, room centred on the origin in x and y
TABLE_SIZE = (1.2, 0.8)
TABLE_HEIGHT = 0.75
TABLE_THICKNESS = 0.04
PAPER_LIFT = 0.0005  # the marker paper floats this far above the table top (no coplanar faces)
MARKER_BORDER_MODULES = 1  # white quiet zone around the black square, in marker modules
ARUCO_DICT = "DICT_4X4_50"
ARUCO_ID = 0


@dataclass
class Marker:
    """The printed ArUco marker: paper centre, in-plane axes (image columns, image rows), sizes and bitmap."""

    centre: np.ndarray  # (3,)
    ex: np.ndarray  # (3,) world direction of increasing image column
    ey: np.ndarray  # (3,) world direction of increasing image row
    size: float  # black square side in metres
    paper: float  # printed sheet side in metres (square plus white border)
    bitmap: np.ndarray  # (n, n) float32 albedo, 1 px per module, border included

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.ey, self.ex)  # +Z for a marker lying face up

    def corners(self) -> np.ndarray:
        """World corners (4, 3) of the black square in cv2.aruco order: TL, TR, BR, BL."""
        h = self.size / 2
        ab = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        return self.centre + ab[:, :1] * self.ex + ab[:, 1:] * self.ey

    def albedo_at(self, p: np.ndarray) -> np.ndarray:
        """Printed albedo (N,) at world points p (N, 3) on the paper plane; nearest module, clamped to the sheet."""
        n = self.bitmap.shape[0]
        d = p - self.centre
        a = (d[:, 0] * self.ex[0] + d[:, 1] * self.ex[1] + d[:, 2] * self.ex[2]) / self.paper + 0.5
        b = (d[:, 0] * self.ey[0] + d[:, 1] * self.ey[1] + d[:, 2] * self.ey[2]) / self.paper + 0.5
        col = np.clip(np.floor(a * n).astype(np.int64), 0, n - 1)
        row = np.clip(np.floor(b * n).astype(np.int64), 0, n - 1)
        return self.bitmap[row, col]


@dataclass
class Scene:
    """The room mesh with per-face materials and corner normals, the marker, the light and key dimensions."""

    mesh: trimesh.Trimesh
    face_material: np.ndarray  # (F,) int index into textures.MATERIALS
    corner_normals: np.ndarray  # (F, 3, 3) unit normals at each face corner
    marker: Marker
    light: np.ndarray  # (3,) point light position
    table_top_z: float
    table_centre: np.ndarray  # (3,) centre of the table top surface
    moving: tuple[MovingPart, ...] = ()  # the dynamic scene's rigid moving parts (empty: a static scene)
    face_part: np.ndarray | None = None  # (F,) int: index into `moving`, -1 for static faces
    part_poses: tuple | None = None  # world-from-rest (R, t) per moving part of this posed mesh; None = rest

    @property
    def bounds(self) -> np.ndarray:
        return np.asarray(self.mesh.bounds)

    def texture_points(self, faces: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Where the solid texture is looked up for hits p (N, 3) on `faces`: the part's rest pose, so that the
        texture moves with a moving part; static faces use the world point itself."""
        if self.part_poses is None or self.face_part is None:
            return p
        part = self.face_part[faces]
        out = p.copy()
        for k, (R, t) in enumerate(self.part_poses):
            sel = part == k
            if sel.any():
                out[sel] = rows_at((p[sel] - t).astype(p.dtype), R)  # R^T (p - t), row by row
        return out


def pose_scene(scene: Scene, s: float) -> Scene:
    """The scene at normalised time s: each moving part's vertices and corner normals moved rigidly."""
    if not scene.moving:
        return scene
    verts = np.array(scene.mesh.vertices, dtype=np.float64)
    faces = np.asarray(scene.mesh.faces)
    normals = scene.corner_normals.copy()
    poses = []
    for k, part in enumerate(scene.moving):
        R, t = part.pose(s)
        sel = scene.face_part == k
        vids = np.unique(faces[sel])
        verts[vids] = verts[vids] @ R.T + t
        normals[sel] = normals[sel] @ R.T
        poses.append((R, t))
    mesh = trimesh.Trimesh(verts, faces, process=False)
    mesh.visual.face_colors = scene.mesh.visual.face_colors
    return replace(scene, mesh=mesh, corner_normals=normals, part_poses=tuple(poses))


def marker_bitmap(border_modules: int = MARKER_BORDER_MODULES) -> np.ndarray:
    """The DICT_4X4_50 id-0 marker as albedo, one pixel per module, with a white border (paper 0.9, ink 0.05)."""
    import cv2

    d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, ARUCO_DICT))
    bits = cv2.aruco.generateImageMarker(d, ARUCO_ID, d.markerSize + 2)  # 1 px per module incl. black border
    img = np.pad(bits, border_modules, constant_values=255)
    return np.where(img > 127, 0.9, 0.05).astype(np.float32)


def _part(mesh: trimesh.Trimesh, material: str, smooth_centre=None, smooth_axis=None):
    """(vertices, faces, corner normals, material ids) of one part; smooth normals for a sphere or cylinder side."""
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    fn = np.asarray(mesh.face_normals, dtype=np.float64)
    cn = np.repeat(fn[:, None, :], 3, axis=1)
    if smooth_centre is not None:
        c = np.asarray(smooth_centre, dtype=np.float64)
        rel = v[f] - c
        if smooth_axis is not None:  # cylinder: radial normals on the side, flat caps
            ax = np.asarray(smooth_axis, dtype=np.float64)
            rad = rel - (rel @ ax)[..., None] * ax
            side = np.abs(fn @ ax) < 0.5
            cn[side] = rad[side] / np.linalg.norm(rad[side], axis=-1, keepdims=True)
        else:
            cn = rel / np.linalg.norm(rel, axis=-1, keepdims=True)
    return v, f, cn, np.full(len(f), material_index(material))


def _quad(corners, material: str):
    c = np.asarray(corners, dtype=np.float64)
    return _part(trimesh.Trimesh(c, [[0, 1, 2], [0, 2, 3]], process=False), material)


def _box(extents, centre, material: str, yaw_deg: float = 0.0):
    T = trimesh.transformations.rotation_matrix(np.radians(yaw_deg), [0, 0, 1])
    T[:3, 3] = centre
    return _part(trimesh.creation.box(extents=extents, transform=T), material)


def _room_parts():
    X, Y, Z = ROOM[0] / 2, ROOM[1] / 2, ROOM[2]
    parts = [
        _quad([[-X, -Y, 0], [X, -Y, 0], [X, Y, 0], [-X, Y, 0]], "floor"),
        _quad([[-X, -Y, Z], [-X, Y, Z], [X, Y, Z], [X, -Y, Z]], "ceiling"),
        _quad([[-X, -Y, 0], [-X, -Y, Z], [X, -Y, Z], [X, -Y, 0]], "wall_a"),
        _quad([[X, Y, 0], [X, Y, Z], [-X, Y, Z], [-X, Y, 0]], "wall_a"),
        _quad([[X, -Y, 0], [X, -Y, Z], [X, Y, Z], [X, Y, 0]], "wall_b"),
        _quad([[-X, Y, 0], [-X, Y, Z], [-X, -Y, Z], [-X, -Y, 0]], "wall_b"),
        _quad([[-1.0, -0.7, 0.002], [1.0, -0.7, 0.002], [1.0, 0.7, 0.002], [-1.0, 0.7, 0.002]], "rug"),
        _quad([[-X + 0.003, 0.8, 1.1], [-X + 0.003, -0.2, 1.1], [-X + 0.003, -0.2, 1.8], [-X + 0.003, 0.8, 1.8]],
              "picture"),
        _box((0.8, 0.4, 0.9), (-1.0, Y - 0.2, 0.45), "cabinet"),
        _box((0.5, 0.5, 0.5), (X - 0.3, -Y + 0.35, 0.25), "box_card", yaw_deg=8.0),
    ]
    return parts


def _table_frame(top: float):
    tx, ty = TABLE_SIZE
    parts = [_box((tx, ty, TABLE_THICKNESS), (0, 0, top - TABLE_THICKNESS / 2), "table_top")]
    leg_h = top - TABLE_THICKNESS
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(_box((0.05, 0.05, leg_h), (sx * (tx / 2 - 0.07), sy * (ty / 2 - 0.07), leg_h / 2),
                              "table_leg"))
    return parts


def _mug_and_ball(top: float):
    mug_c = np.array([0.02, -0.2, top + 0.055])
    mug = trimesh.creation.cylinder(radius=0.045, height=0.11, sections=48)
    mug.apply_translation(mug_c)
    ball_c = np.array([-0.38, -0.2, top + 0.07])
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.07)
    ball.apply_translation(ball_c)
    return [_part(mug, "mug", smooth_centre=mug_c, smooth_axis=(0, 0, 1)), _part(ball, "ball", smooth_centre=ball_c)]


def _table_parts(top: float):
    return _table_frame(top) + [
        _box((0.25, 0.18, 0.12), (-0.3, 0.12, top + 0.06), "box_card", yaw_deg=15.0),
        _box((0.12, 0.12, 0.22), (0.0, 0.2, top + 0.11), "box_blue", yaw_deg=-30.0),
        _box((0.22, 0.16, 0.03), (0.35, 0.25, top + 0.015), "book", yaw_deg=5.0),
    ] + _mug_and_ball(top)


def _moving_table_parts(top: float) -> list[tuple[MovingPart, tuple]]:
    """The dynamic scene's moving objects in their rest pose (time 0), each with its motion: a box slides
    0.3 m along the table, a tall box spins half a turn, the lid of a chest opens 110 degrees."""
    card_c, blue_c = (-0.38, 0.18, top + 0.06), (0.2, 0.12, top + 0.11)
    hinge = (0.45, 0.32, top + 0.09)  # back top edge of the chest
    return [
        (MovingPart("sliding_box", "slide", (1.0, 0.0, 0.0), 0.3, (0.1, 0.9)),
         _box((0.25, 0.18, 0.12), card_c, "box_card")),
        (MovingPart("spinning_box", "spin", (0.0, 0.0, 1.0), 180.0, (0.0, 1.0), blue_c),
         _box((0.12, 0.12, 0.22), blue_c, "box_blue", yaw_deg=-30.0)),
        (MovingPart("chest_lid", "hinge", (-1.0, 0.0, 0.0), 110.0, (0.2, 0.7), hinge),
         _box((0.2, 0.14, 0.02), (0.45, 0.25, top + 0.1), "book")),
    ]


def _marker(top: float, size: float) -> tuple[Marker, tuple]:
    bitmap = marker_bitmap()
    paper = size * bitmap.shape[0] / (bitmap.shape[0] - 2 * MARKER_BORDER_MODULES)
    yaw = np.radians(20.0)
    ex = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    ey = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    centre = np.array([0.3, -0.1, top + PAPER_LIFT])
    h = paper / 2
    corners = [centre + a * h * ex + b * h * ey for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    marker = Marker(centre=centre, ex=ex, ey=ey, size=size, paper=paper, bitmap=bitmap)
    return marker, _quad(corners, "marker")


def build_scene(marker_size_m: float = 0.15, dynamic: bool = False) -> Scene:
    """The room, table, objects and marker as one mesh in metres, +Z up, floor at z = 0 (at rest: time 0).

    `dynamic` lays the table out with moving objects (see `_moving_table_parts`, `pose_scene`).
    """
    top = TABLE_HEIGHT
    if not 0.02 <= marker_size_m <= 0.3:
        from twin_kit import InputError

        raise InputError(f"marker size {marker_size_m} m does not fit on the table (0.02 .. 0.3 m)")
    marker, marker_part = _marker(top, marker_size_m)
    if dynamic:
        moving = _moving_table_parts(top)
        chest = _box((0.2, 0.14, 0.09), (0.45, 0.25, top + 0.045), "cabinet")
        parts = _room_parts() + _table_frame(top) + _mug_and_ball(top) + [chest, marker_part]
        part_of = [-1] * len(parts) + list(range(len(moving)))
        parts += [p for _, p in moving]
    else:
        moving = []
        parts = _room_parts() + _table_parts(top) + [marker_part]
        part_of = [-1] * len(parts)
    verts, faces, normals, mats, face_part = [], [], [], [], []
    base = 0
    for (v, f, cn, m), k in zip(parts, part_of):
        verts.append(v)
        faces.append(f + base)
        normals.append(cn)
        mats.append(m)
        face_part.append(np.full(len(f), k, dtype=np.int64))
        base += len(v)
    mesh = trimesh.Trimesh(np.concatenate(verts), np.concatenate(faces), process=False)
    face_material = np.concatenate(mats)
    colours = np.array([m.mean_colour for m in MATERIALS])[face_material]
    mesh.visual.face_colors = np.concatenate([(colours * 255).round(), np.full((len(colours), 1), 255)], 1)
    return Scene(mesh=mesh, face_material=face_material, corner_normals=np.concatenate(normals), marker=marker,
                 light=np.array([0.7, -0.9, 2.35]), table_top_z=top, table_centre=np.array([0.0, 0.0, top]),
                 moving=tuple(m for m, _ in moving), face_part=np.concatenate(face_part) if moving else None)
