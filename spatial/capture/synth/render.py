"""Ray-cast rendering of the synthetic scene: exact z-depth, solid textures, Lambert + shadow, then phone effects.

One embree ray per pixel (trimesh + embreex) finds the triangle; the hit is then recomputed in float64
from the triangle's plane, so the ground-truth depth is exact. Rays follow the pixel-centre convention:
pixel (u, v) is centred on integer coordinates and its ray is R^T K^-1 [u, v, 1], whose camera-z
component is 1, so the ray parameter at the hit *is* the z-depth.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import trimesh

from spatial.cameras import Camera
from spatial.capture.synth.geometry import pixel_rays, project, rows_at, unproject
from spatial.capture.synth.scene import Scene
from spatial.capture.synth.textures import MATERIALS, NoiseField, material_albedo

AMBIENT = 0.32
LIGHT_COLOUR = np.array([1.0, 0.95, 0.88], dtype=np.float32)
MARKER_SUPERSAMPLE = 4  # per axis, for anti-aliased marker edges


@dataclass
class Tracer:
    """The scene plus its embree intersector and per-face data the shader needs."""

    scene: Scene
    intersector: object
    normals: np.ndarray  # (F, 3) unit face normals
    plane_offsets: np.ndarray  # (F,) n . v0 of each face's plane
    smooth: np.ndarray  # (F,) bool: interpolate corner normals

    @staticmethod
    def make(scene: Scene) -> Tracer:
        if not trimesh.ray.has_embree:
            from twin_kit import InputError

            raise InputError("embreex is not installed; the synthetic renderer needs trimesh's embree ray caster")
        from trimesh.ray.ray_pyembree import RayMeshIntersector

        m = scene.mesh
        cn = scene.corner_normals
        smooth = np.abs(cn - cn[:, :1]).max(axis=(1, 2)) > 1e-9
        normals = np.asarray(m.face_normals, dtype=np.float64)
        offsets = rows_dot(normals, np.asarray(m.triangles[:, 0], dtype=np.float64))
        return Tracer(scene, RayMeshIntersector(m), normals, offsets, smooth)

    def first_hit(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Triangle index (-1 = miss) and ray parameter t (hit = o + t d, d not normalised) per ray.

        `origins` is (N, 3), or (3,) for rays sharing one origin. The hit is recomputed in float64 from the
        triangle's plane (embree works in float32), so t is exact for the returned triangle.
        """
        shared = origins.ndim == 1
        tri = np.asarray(self.intersector.intersects_first(np.broadcast_to(origins, dirs.shape) if shared
                                                           else origins, dirs), dtype=np.int64)
        t = np.full(len(tri), np.inf)
        hit = np.flatnonzero(tri >= 0)
        th = tri[hit]
        n = self.normals[th]
        den = rows_dot(n, dirs[hit])
        num = self.plane_offsets[th] - (rows_at(n, origins) if shared else rows_dot(n, origins[hit]))
        with np.errstate(divide="ignore", invalid="ignore"):
            th_t = num / den
        good = np.isfinite(th_t) & (th_t > 0)
        t[hit[good]] = th_t[good]
        tri[hit[~good]] = -1
        return tri, t


def rows_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product of two (N, 3) arrays."""
    return a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]


@dataclass
class Render:
    """A noise-free render: linear colour (H, W, 3) and z-depth (H, W), 0 where no surface was hit; for a scene
    with moving parts, `part` (H, W) int16 is the moving part seen at each pixel (-1: static or nothing)."""

    colour: np.ndarray
    depth: np.ndarray
    part: np.ndarray | None = None


def render_frame(tracer: Tracer, field: NoiseField, cam: Camera, shadows: bool = True) -> Render:
    """Ray-cast one frame: texture every hit, shade with ambient + Lambert from the point light."""
    scene = tracer.scene
    H, W = cam.height, cam.width
    centre, dirs = pixel_rays(cam)
    tri, t = tracer.first_hit(centre, dirs)
    hit = np.flatnonzero(tri >= 0)
    depth = np.zeros(H * W, dtype=np.float32)
    depth[hit] = t[hit]
    colour = np.zeros((H * W, 3), dtype=np.float32)
    part = None
    if scene.face_part is not None:
        part = np.full(H * W, -1, dtype=np.int16)
        part[hit] = scene.face_part[tri[hit]]
        part = part.reshape(H, W)
    if len(hit) == 0:
        return Render(colour.reshape(H, W, 3), depth.reshape(H, W), part)
    f = tri[hit]
    d = dirs[hit].astype(np.float32)
    p = (centre + t[hit, None] * dirs[hit]).astype(np.float32)  # float32: shading and texture only
    n = tracer.normals[f].astype(np.float32)
    sm = tracer.smooth[f]
    if sm.any():
        bary = trimesh.triangles.points_to_barycentric(scene.mesh.triangles[f[sm]], p[sm].astype(np.float64))
        ns = np.einsum("ij,ijk->ik", bary, scene.corner_normals[f[sm]])
        n[sm] = ns / np.linalg.norm(ns, axis=1, keepdims=True)
    cos_v = rows_dot(n, d) / np.sqrt(rows_dot(d, d))
    n[cos_v > 0] *= -1  # face the viewer: walls and quads are two-sided
    footprint = (t[hit].astype(np.float32) / np.float32(cam.fx)) / np.clip(np.abs(cos_v), 0.25, 1.0)

    mats = scene.face_material[f]
    p_tex = scene.texture_points(f, p)  # moving parts carry their texture with them
    albedo = np.zeros((len(hit), 3), dtype=np.float32)
    for m in np.unique(mats):
        sel = mats == m
        if MATERIALS[m].marker:
            albedo[sel] = _marker_albedo(scene, cam, hit[sel])[:, None]
        else:
            albedo[sel] = material_albedo(field, int(m), MATERIALS[m], p_tex[sel], footprint[sel])

    to_light = scene.light.astype(np.float32) - p
    dist = np.sqrt(rows_dot(to_light, to_light))
    lam = np.clip(rows_dot(n, to_light) / dist, 0.0, None)
    if shadows:
        lit = lam > 0
        o = (p[lit] + 1e-4 * n[lit]).astype(np.float64)
        _, ts = tracer.first_hit(o, to_light[lit].astype(np.float64))
        lam[np.flatnonzero(lit)[ts < 1.0 - 1e-6]] = 0.0
    diffuse = lam * np.float32(1.5) / (1.0 + np.float32(0.22) * dist * dist)
    colour[hit] = albedo * (AMBIENT + diffuse[:, None] * LIGHT_COLOUR)
    return Render(colour.reshape(H, W, 3), depth.reshape(H, W), part)


def _marker_albedo(scene: Scene, cam: Camera, pix: np.ndarray) -> np.ndarray:
    """Printed albedo of marker pixels, averaged over sub-pixel rays meeting the paper plane (anti-aliasing)."""
    mk = scene.marker
    u = (pix % cam.width).astype(np.float64)
    v = (pix // cam.width).astype(np.float64)
    k = MARKER_SUPERSAMPLE
    off = (np.arange(k) + 0.5) / k - 0.5
    du, dv = (a.ravel() for a in np.meshgrid(off, off))
    uu = (u[:, None] + du).ravel()
    vv = (v[:, None] + dv).ravel()
    d = np.stack([(uu - cam.cx) / cam.fx, (vv - cam.cy) / cam.fy, np.ones_like(uu)], -1)
    d = rows_at(d, cam.R)
    c = cam.center
    s = float((mk.centre - c) @ mk.normal) / rows_at(d, mk.normal)
    q = c + s[:, None] * d
    return mk.albedo_at(q).reshape(len(pix), k * k).mean(axis=1)


def motion_blur(colour: np.ndarray, depth: np.ndarray, cam: Camera, start: tuple[np.ndarray, np.ndarray],
                end: tuple[np.ndarray, np.ndarray], taps: int = 5, max_px: float = 3.0) -> np.ndarray:
    """Blur along each pixel's flow between the exposure's start and end poses (world-to-camera R, t).

    The flow comes from the depth, so near things streak more than far ones; it is taken as linear in
    time between the two ends and scaled down so that the 95th-percentile streak is at most `max_px`.
    """
    valid = depth > 0
    if taps < 2 or max_px <= 0 or not valid.any():
        return colour
    X = unproject(depth, cam)[valid]
    H, W = depth.shape
    gv, gu = (a.astype(np.float32) for a in np.nonzero(valid))
    flows = []
    for R, t in (start, end):
        uv, _ = project(X, Camera(cam.name, W, H, cam.fx, cam.fy, cam.cx, cam.cy, R, t))
        flows.append(np.stack([uv[:, 0] - gu, uv[:, 1] - gv], -1).astype(np.float32))
    streak = float(np.percentile(np.linalg.norm(flows[1] - flows[0], axis=1), 95))
    if not np.isfinite(streak) or streak < 0.05:
        return colour
    scale = min(1.0, max_px / streak)
    base_u, base_v = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    acc = np.zeros_like(colour)
    for s in np.linspace(0.0, 1.0, taps):
        f = scale * (flows[0] * (1.0 - s) + flows[1] * s)
        mu, mv = base_u.copy(), base_v.copy()
        mu[valid] -= f[:, 0]
        mv[valid] -= f[:, 1]
        acc += cv2.remap(colour, mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return acc / taps


def finish(colour: np.ndarray, gain: float, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Exposure gain, signal-dependent sensor noise and 8-bit quantisation: uint8 (H, W, 3)."""
    x = np.clip(colour * gain, 0.0, 1.0)
    if noise > 0:
        sigma = noise * np.sqrt(0.006 ** 2 + 0.0002 * x)
        x = x + sigma * rng.standard_normal(x.shape, dtype=np.float32)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

