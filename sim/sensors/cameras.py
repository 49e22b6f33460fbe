"""Per-world cameras: RGB, depth, segmentation (and normals) of the robot standing in the captured scene.

A camera is fixed in the scene (a Twin `Camera`, OpenCV convention, world-to-camera) or mounted on a robot
link. The robot and objects are ray traced (Newton's SensorCamera on Warp); the scene's appearance comes from
its Gaussian splats (Twin's rasterizer) when the bundle has splats.ply, else from the ray-traced scan mesh. A
bundle with dynamic splats (dynamic/, a moving scene) shows them, deformed to the world's simulation time.
Layers are composed per pixel by depth (`compose_frame`), so the robot occludes the scene where it is nearer
and is hidden where it is farther. Depth is the OpenCV z of the nearest surface (metres, inf where nothing);
segmentation labels every pixel: 0 nothing, 1 scene, 2 robot, 3 task objects. `control_maps` gives depth,
segmentation, normals and edges of the same render for restyling.

Speed: with a fixed camera the static scene (mesh trace and splat render) is produced once and cached; each
frame traces only the robot and objects, inside the screen rectangle they cover (see sim/sensor_trace.py).
A mounted camera moves with the link, so it traces and splats the whole view every frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sim.physics.world import World, frame_poses
from spatial import Camera
from twin_kit import CV_TO_GL, InputError, qmat, tmul, torch_threads

SEG_NONE, SEG_SCENE, SEG_ROBOT, SEG_OBJECT = 0, 1, 2, 3


@dataclass
class SensorFrame:
    """One render of the sensor's worlds: tensors with the view (world) count as first dimension."""

    rgb: torch.Tensor        # (N, H, W, 3) float32 in [0, 1]
    depth: torch.Tensor      # (N, H, W, 1) float32 metres (OpenCV z), inf = no hit
    seg: torch.Tensor        # (N, H, W) int64 class per pixel (SEG_*)
    normal: torch.Tensor | None = None  # (N, H, W, 3) world normals when requested (scene: the scan mesh's)


def _mat_to_quat(R: np.ndarray) -> np.ndarray:
    """Quaternion xyzw of a rotation matrix."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_quat()


def camera_to_world_gl(cam: Camera) -> np.ndarray:
    """(7,) camera-to-world transform of a Twin camera in the renderer's OpenGL camera axes."""
    c2w = cam.cam_to_world
    R = c2w[:3, :3] @ CV_TO_GL
    return np.concatenate([c2w[:3, 3], _mat_to_quat(R)])


def _splat_source(world: World, splats):
    """What to render the scene's appearance from: a path or Gaussians, or None (ray-traced mesh only)."""
    from sim.sensors.splat_background import bundle_dynamic, bundle_splats

    if splats is None or splats is True:
        found = bundle_dynamic(world.cfg.scene) or bundle_splats(world.cfg.scene)
        if found is None and splats is True:
            raise InputError(f"{world.cfg.scene}: scene has no splats.ply (run `twin splat` on the bundle)")
        return found
    if splats is False:
        return None
    return splats  # a splats.ply path, a scenes.Gaussians, a scenes.DynamicSplats or a SplatBackground


def scene_background(world: World, splats=None, backend: str = "auto"):
    """The world's splat background in metres (sim.SplatBackground), chosen as `Sensors(splats=...)` chooses
    it, or None (mesh only). One may be built ahead and handed to a Sensors (e.g. to probe a camera's view
    first), so the splats load once."""
    from sim.sensors.splat_background import SplatBackground

    src = _splat_source(world, splats)
    if src is None or isinstance(src, SplatBackground):
        return src
    mpu = world.scene.metres_per_unit if world.scene is not None else 1.0
    return SplatBackground(src, mpu, backend=backend, device="cpu")


class Sensors:
    """A camera per world, fixed in the scene or mounted on the robot's camera link (`mounted=True`).

    splats: None = the bundle's splats (its dynamic/ when it has one, else splats.ply); True = require them;
    False = ray-traced mesh only; or a splats.ply path / scenes.Gaussians / scenes.DynamicSplats in scene units
    (scaled like the mesh), or a SplatBackground already in metres (`scene_background`). Dynamic splats are
    deformed to `world.sim_time` at every render.
    cache_static: trace (and splat) the static scene of a fixed camera once; False traces all every frame.
    mesh_fill: show the ray-traced scan mesh where the splats are transparent.
    threads: Python threads a trace is split over (None: torch.get_num_threads()).
    """

    def __init__(self, world: World, camera: Camera, mounted: bool = False, normals: bool = False,
                 worlds: list[int] | None = None, splats=None, cache_static: bool = True, mesh_fill: bool = True,
                 splat_backend: str = "auto", threads: int | None = None):
        import warp as wp
        from newton.sensors import SensorCamera

        from sim.sensors._trace import Tracer, static_scene_model, world_leaves

        self.world, self.camera, self.mounted, self.normals = world, camera, mounted, normals
        self.mesh_fill = mesh_fill
        self.views = np.arange(world.n) if worlds is None else np.asarray(worlds, dtype=np.int64)
        threads = torch.get_num_threads() if threads is None else threads
        self.tracer = Tracer(world.model, normals, min(int(threads), 16))
        self.sensor = self.tracer.sensor
        W, H = camera.width, camera.height
        # Newton puts pixel centres at +0.5, Twin's cameras (OpenCV) at integer coordinates
        self.rays = SensorCamera.compute_camera_rays_pinhole_opencv(
            W, H, camera.fx, camera.fy, camera.cx + 0.5, camera.cy + 0.5, device=world.device)
        self._rays_np = self.rays.numpy()
        self._wp = wp
        self._classes = torch.from_numpy(self._shape_classes())
        if mounted:  # camera pose relative to the mount frame, from the given extrinsics at the home pose
            mount = frame_poses(world, world.robot.camera_body, world.robot.camera_offset)[0]
            inv = np.concatenate([-qmat(mount[3:]).T @ mount[:3], mount[3:] * np.array([-1, -1, -1, 1.0])])
            self._rel = tmul(inv, camera_to_world_gl(camera))
        self.splats = scene_background(world, splats, splat_backend)
        self._gl = camera_to_world_gl(camera)
        self._leaves = world_leaves(world.model, self.views)
        self._static = None  # (static ray-traced layer, composed base layer), one view each
        if not mounted and cache_static:
            model = static_scene_model(world)
            if model is not None:
                self._static = self._build_static(Tracer(model, normals, 1))
        self._splat_fixed = None
        if not mounted and self.splats is not None and self._static is None:
            self._splat_fixed = self._render_splats(camera_to_world_gl(camera)[None])

    # ------------------------------------------------------------------ setup

    def _shape_classes(self) -> np.ndarray:
        """Segmentation class of every shape index of the model, plus a last entry (SEG_NONE) for no hit."""
        w = self.world
        body = w.model.shape_body.numpy()
        world_of = w.model.shape_world.numpy()
        local = np.where(body >= 0, body % max(w.bodies_per_world, 1), -1)
        cls = np.full(len(body) + 1, SEG_NONE, dtype=np.int64)
        cls[:-1] = np.where(world_of < 0, SEG_SCENE, SEG_ROBOT)  # a fixed base link is in its world, not global
        if w.object_bodies:
            cls[:-1][np.isin(local, w.object_bodies) & (body >= 0)] = SEG_OBJECT
        return cls

    def _render_splats(self, xforms: np.ndarray):
        from sim.sensors.splat_background import gl_to_viewmats

        c = self.camera
        return self.splats.render(gl_to_viewmats(xforms), c.K, c.width, c.height)

    def _build_static(self, tracer) -> tuple[SensorFrame, SensorFrame]:
        """The static scene from the fixed camera: its ray-traced layer and the layer composed with splats."""
        self._static_tracer = tracer  # keeps the static model alive
        xf = camera_to_world_gl(self.camera)[None]
        tr = tracer.trace(tracer.model.state(), xf, None, self.rays)
        seg = torch.where(tr.shape >= 0, SEG_SCENE, SEG_NONE)
        nrm = None if tr.normal is None else tr.normal.clone()
        layer = SensorFrame(rgb=tr.rgb.clone(), depth=tr.depth.clone()[..., None], seg=seg, normal=nrm)
        self._splat_static = splat = self._render_splats(xf) if self.splats is not None else None
        return layer, compose_frame(layer, splat, self.mesh_fill)

    # ------------------------------------------------------------------ per frame

    def camera_transforms(self, state=None) -> np.ndarray:
        """(views, 7) camera-to-world transforms (OpenGL camera axes) of the rendered worlds' cameras (in `state`,
        default the world's current one)."""
        w = self.world
        if self.mounted:
            mount = frame_poses(w, w.robot.camera_body, w.robot.camera_offset, state)[self.views]
            return tmul(mount, np.broadcast_to(self._rel, mount.shape))
        return np.broadcast_to(self._gl, (len(self.views), 7)).copy()

    def _layer(self, tr) -> SensorFrame:
        """A trace's outputs as a ray-traced layer (segmentation classes from the shape index)."""
        n = len(self._classes) - 1
        seg = self._classes[torch.where(tr.shape >= 0, tr.shape, n)]
        return SensorFrame(rgb=tr.rgb, depth=tr.depth[..., None], seg=seg, normal=tr.normal)

    def render(self, out: SensorFrame | None = None, state=None, sim_time: float | None = None) -> SensorFrame:
        """Every world's camera at the current state: ray-traced robot and objects in the (splat) scene.

        out: a frame from an earlier render of these sensors to overwrite (no per-frame allocation, as a
        training loop wants); None returns new tensors. state, sim_time: render this copy of the world's state
        (`world.model.state()` with its body_q copied in) at that time instead of the live one, so a frame can
        be rendered on another thread while the physics steps on (these sensors' shape BVH is the model's: one
        render at a time).
        """
        w = self.world
        state = w.state if state is None else state
        w.model.bvh_refit_shapes(state)
        if self.splats is not None and self.splats.seek(w.sim_time if sim_time is None else sim_time):
            self._refresh_fixed_splats()
        xforms = self.camera_transforms(state)
        if self._static is not None:
            with torch_threads(1):
                return self._render_cached(xforms, out, state)
        splat = None
        if self.splats is not None:  # the rasterizer spreads its tiles over torch's threads
            splat = self._splat_fixed if self._splat_fixed is not None else self._render_splats(xforms)
        with torch_threads(1):
            layer = self._layer(self.tracer.trace(state, xforms, self.views, self.rays))
            frame = compose_frame(layer, splat, self.mesh_fill)
            return frame if out is None else _copy_into(out, frame)

    def _refresh_fixed_splats(self) -> None:
        """Re-render the fixed camera's cached splat layer after dynamic splats moved to another time."""
        xf = camera_to_world_gl(self.camera)[None]
        if self._static is not None:
            self._splat_static = self._render_splats(xf)
            self._static = (self._static[0], compose_frame(self._static[0], self._splat_static, self.mesh_fill))
        if self._splat_fixed is not None:
            self._splat_fixed = self._render_splats(xf)

    def _render_cached(self, xforms: np.ndarray, out: SensorFrame | None, state) -> SensorFrame:
        """Fixed camera: the cached static scene, with the robot and objects traced inside their crop."""
        from sim.sensors._trace import dynamic_crop

        static, base = self._static
        n = len(self.views)
        if out is None:
            out = SensorFrame(*(None if t is None else torch.empty(n, *t.shape[1:], dtype=t.dtype) for t in
                                (base.rgb, base.depth, base.seg, base.normal)))
        out = _copy_into(out, base)
        c = self.camera
        crop = dynamic_crop(self.world.model, self._leaves, c.R, c.t, c.K, c.width, c.height)
        if crop is None:
            return out
        x0, y0, x1, y1 = crop
        rays = self._wp.array(np.ascontiguousarray(self._rays_np[y0:y1, x0:x1]), dtype=self._wp.vec3f,
                              device=self.world.device)
        dyn = self._layer(self.tracer.trace(state, xforms, self.views, rays, global_shapes=False))
        st = _crop(static, y0, y1, x0, x1)
        hit = (dyn.seg != SEG_NONE) & (dyn.depth[..., 0] < st.depth[..., 0])
        h3 = hit[..., None]
        layer = SensorFrame(rgb=torch.where(h3, dyn.rgb, st.rgb), depth=torch.where(h3, dyn.depth, st.depth),
                            seg=torch.where(hit, dyn.seg, st.seg),
                            normal=None if dyn.normal is None else torch.where(h3, dyn.normal, st.normal))
        splat = None
        if self.splats is not None:
            sp = self._splat_static
            splat = type(sp)(rgb=sp.rgb[:, y0:y1, x0:x1], depth=sp.depth[:, y0:y1, x0:x1],
                             alpha=sp.alpha[:, y0:y1, x0:x1])
        comp = compose_frame(layer, splat, self.mesh_fill)
        out.rgb[:, y0:y1, x0:x1] = comp.rgb
        out.depth[:, y0:y1, x0:x1] = comp.depth
        out.seg[:, y0:y1, x0:x1] = comp.seg
        if out.normal is not None:
            out.normal[:, y0:y1, x0:x1] = comp.normal
        return out


def _crop(f: SensorFrame, y0: int, y1: int, x0: int, x1: int) -> SensorFrame:
    return SensorFrame(*(None if t is None else t[:, y0:y1, x0:x1] for t in (f.rgb, f.depth, f.seg, f.normal)))


def _copy_into(out: SensorFrame, f: SensorFrame) -> SensorFrame:
    """Copy (broadcasting over views) f's tensors into out's and return out."""
    for name in ("rgb", "depth", "seg", "normal"):
        dst, src = getattr(out, name), getattr(f, name)
        if (dst is None) != (src is None):
            raise ValueError(f"render(out=...): {name} present in one frame only (same sensors required)")
        if dst is not None:
            dst.copy_(src.expand_as(dst))
    return out


def _clone(f: SensorFrame) -> SensorFrame:
    return SensorFrame(*(None if t is None else t.clone() for t in (f.rgb, f.depth, f.seg, f.normal)))


def compose_frame(layer: SensorFrame, splat=None, mesh_fill: bool = True) -> SensorFrame:
    """The ray-traced layer composed with a splat render of the scene (sim.splat_background.SplatRender).

    Per pixel: a robot or object hit nearer than the splats' expected depth is drawn as traced; otherwise the
    splats are composited over what the ray tracer saw behind them (the robot, or the scan mesh when
    `mesh_fill`, else black). Depth and segmentation follow the visible surface: the splats count as the
    scene where their alpha >= 0.5. Normals stay the ray tracer's (the scan mesh's for scene pixels).
    """
    if splat is None:
        return _clone(layer)
    a, sdep = splat.alpha, splat.depth
    dyn = layer.seg >= SEG_ROBOT
    front = dyn & (layer.depth[..., 0] <= sdep[..., 0])
    shown = dyn if not mesh_fill else layer.seg != SEG_NONE
    under = torch.where(shown[..., None], layer.rgb, torch.zeros((), dtype=layer.rgb.dtype))
    over = splat.rgb + (1.0 - a) * under
    f3 = front[..., None]
    solid = (a[..., 0] >= 0.5) & ~front
    rgb = torch.where(f3, layer.rgb, over)
    depth = torch.where(solid[..., None], sdep, layer.depth)
    seg = torch.where(solid, torch.full((), SEG_SCENE, dtype=layer.seg.dtype), layer.seg)
    return SensorFrame(rgb=rgb, depth=depth, seg=seg, normal=None if layer.normal is None else layer.normal.clone())


def compose_with_splats(frame: SensorFrame, splat_rgb: torch.Tensor, splat_depth: torch.Tensor,
                        splat_alpha: torch.Tensor | None = None) -> torch.Tensor:
    """RGB of `compose_frame` for a plain ray-traced frame and splat tensors (N, H, W, C) or (H, W, C).

    splat_rgb is premultiplied (rendered over black); without `splat_alpha` a pixel with finite splat depth
    counts as opaque.
    """
    from sim.sensors.splat_background import SplatRender

    def full(t):
        return t.expand(*frame.rgb.shape[:3], t.shape[-1]) if t.dim() == 3 else t

    sdep = full(splat_depth)
    a = (torch.isfinite(sdep) & (sdep > 0)).float() if splat_alpha is None else full(splat_alpha)
    sdep = torch.where(a > 0, sdep, torch.full_like(sdep, float("inf")))
    return compose_frame(frame, SplatRender(rgb=full(splat_rgb), depth=sdep, alpha=a)).rgb


def control_maps(frame: SensorFrame) -> dict[str, torch.Tensor]:
    """Depth, segmentation, normals and edges from one render, as conditioning maps for restyling."""
    d = frame.depth[..., 0]
    finite = torch.isfinite(d)
    dn = torch.where(finite, d, torch.zeros_like(d))
    seg = frame.seg
    edge = torch.zeros_like(seg, dtype=torch.bool)
    edge[:, 1:, :] |= seg[:, 1:, :] != seg[:, :-1, :]
    edge[:, :, 1:] |= seg[:, :, 1:] != seg[:, :, :-1]
    gy = (dn[:, 1:, :] - dn[:, :-1, :]).abs()
    gx = (dn[:, :, 1:] - dn[:, :, :-1]).abs()
    edge[:, 1:, :] |= gy > 0.05 * dn[:, 1:, :].clamp_min(1e-3)
    edge[:, :, 1:] |= gx > 0.05 * dn[:, :, 1:].clamp_min(1e-3)
    out = {"depth": frame.depth, "seg": seg, "edges": edge}
    if frame.normal is not None:
        out["normal"] = frame.normal
    return out

