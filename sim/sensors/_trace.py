"""Ray tracing for the sensors with Newton's SensorCamera: batched launches, crops, and the static-scene cache.

Three things make the per-frame trace cheap without changing what it returns:
  - the static scene (the scan mesh, or the floor) seen from a fixed camera never changes, so it is traced
    once by a sensor on a model that holds only the scene (`static_scene_sensor`);
  - the robot and objects then need rays only inside the screen rectangle their world bounding boxes cover
    (`dynamic_crop`), traced with the world model's global shapes switched off;
  - a launch is split over views into `threads` Python threads (Warp releases the GIL while a CPU kernel runs).
Outputs come back as torch tensors that share memory with the Warp buffers (read them before the next trace).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

NO_HIT = -1  # shape index of a pixel that hit nothing (Newton's 0xFFFFFFFF read as int32)


@dataclass
class TraceOut:
    """One batched trace: per view (V, h, w[, C]) colour, forward depth, shape index, optional normal."""

    rgb: torch.Tensor            # float32 [0, 1] (sRGB bytes / 255)
    depth: torch.Tensor          # float32 metres, inf where no hit
    shape: torch.Tensor          # int64 shape index of the hit, NO_HIT where none
    normal: torch.Tensor | None  # float32 world normal


class Tracer:
    """A SensorCamera plus reusable output buffers; traces views of chosen worlds through a ray bundle."""

    def __init__(self, model, normals: bool = False, threads: int = 1):
        from newton.sensors import SensorCamera

        self.model, self.normals, self.threads = model, normals, max(1, int(threads))
        # textures: the robots' visual meshes carry their colours as a small palette texture (one shape per link)
        self.sensor = SensorCamera(model, load_textures=True)
        self.sensor.create_default_light()
        self._bufs: dict[tuple, tuple] = {}
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self.configs = {g: SensorCamera.RenderConfig(enable_global_world=g, enable_textures=True)
                        for g in (True, False)}

    def _buffers(self, n: int, w: int, h: int):
        key = (n, w, h)
        if key not in self._bufs:
            s = self.sensor
            self._bufs[key] = (s.allocate_image_color(n, w, h), s.allocate_image_depth_forward(n, w, h),
                               s.allocate_image_shape_index(n, w, h),
                               s.allocate_image_normal(n, w, h) if self.normals else None)
            if len(self._bufs) > 8:  # crops change size every frame: keep the most recent few
                self._bufs.pop(next(iter(self._bufs)))
        return self._bufs[key]

    def trace(self, state, xforms: np.ndarray, worlds: np.ndarray | None, rays, global_shapes: bool = True
              ) -> TraceOut:
        """Trace V views: xforms (V, 7) camera-to-world (OpenGL camera axes), worlds (V,) world per view
        (None: view i renders world i), rays a (h, w, 1, 2) Warp ray bundle in camera space."""
        import warp as wp

        dev = self.model.device
        n, h, w = len(xforms), rays.shape[0], rays.shape[1]
        color, depth, shape, normal = self._buffers(n, w, h)
        xf = wp.array(np.ascontiguousarray(xforms, dtype=np.float32), dtype=wp.transformf, device=dev)
        wi = None if worlds is None else wp.array(np.asarray(worlds, dtype=np.int32), dtype=wp.int32, device=dev)
        cfg = self.configs[bool(global_shapes)]
        k = min(self.threads, n)
        bounds = np.linspace(0, n, k + 1).astype(int)

        def one(i):
            a, b = bounds[i], bounds[i + 1]
            self.sensor.update(state, xf[a:b], rays, color_image=color[a:b], forward_depth_image=depth[a:b],
                               shape_index_image=shape[a:b], normal_image=None if normal is None else normal[a:b],
                               world_indices=None if wi is None else wi[a:b], render_config=cfg)

        if k == 1 or self._pool is None:
            one(0)
        else:
            list(self._pool.map(one, range(k)))
        return unpack(color.numpy(), depth.numpy(), shape.numpy(), None if normal is None else normal.numpy())


def unpack(color: np.ndarray, depth: np.ndarray, shape: np.ndarray, normal: np.ndarray | None) -> TraceOut:
    """Newton's output buffers as tensors: packed RGBA -> float RGB, no-hit depth -> inf, shape -> int64."""
    rgb = torch.from_numpy(color.view(np.uint8).reshape(*color.shape, 4))[..., :3].float().mul_(1.0 / 255.0)
    sidx = torch.from_numpy(shape.view(np.int32)).long()
    d = torch.from_numpy(depth)
    d = torch.where(sidx >= 0, d, torch.full_like(d, float("inf")))
    return TraceOut(rgb=rgb, depth=d, shape=sidx, normal=None if normal is None else torch.from_numpy(normal))


def static_scene_model(world):
    """A Newton model holding only the world's global (static) shapes: the scene mesh, else the floor.

    Colours are copied from the world model so renders match a full trace exactly. None when the world's
    global shapes are not what `build_world` makes (then the caller traces the full world every frame).
    """
    import newton

    from sim.physics.world import add_static_shapes

    glob = np.flatnonzero(world.model.shape_world.numpy() == -1)
    b = newton.ModelBuilder()
    add_static_shapes(b, world.scene, world.cfg.support_plane)
    m = b.finalize(device=world.device)
    if m.shape_count != len(glob) or (m.shape_type.numpy() != world.model.shape_type.numpy()[glob]).any():
        return None
    m.shape_color.assign(world.model.shape_color.numpy()[glob])
    return m


def world_leaves(model, worlds: np.ndarray) -> np.ndarray:
    """Indices of the shape BVH leaves that belong to `worlds` (the leaves' groups are fixed at build)."""
    if model.bvh_shapes is None:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.isin(model.bvh_shapes.groups.numpy(), worlds))


def dynamic_crop(model, leaves: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray, width: int,
                 height: int, pad: int = 1) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (x0, y0, x1, y1) holding the shape BVH leaves `leaves` (see `world_leaves`) seen by one
    fixed camera (R, t world-to-camera, OpenCV), from their refit world bounds; None when none is in view."""
    bvh = model.bvh_shapes
    if bvh is None or not len(leaves):
        return None
    lo, hi = bvh.lowers.numpy()[leaves].astype(np.float64), bvh.uppers.numpy()[leaves].astype(np.float64)
    corners = np.stack([np.where(np.array([i & 1, i & 2, i & 4], bool), hi, lo) for i in range(8)], 1)
    pc = corners @ R.T + t                                     # (L, 8, 3) camera frame
    if (pc[..., 2] <= 1e-3).any():                             # a box reaches behind the camera: whole image
        return 0, 0, width, height
    u = K[0, 0] * pc[..., 0] / pc[..., 2] + K[0, 2]
    v = K[1, 1] * pc[..., 1] / pc[..., 2] + K[1, 2]
    x0, x1 = int(np.floor(u.min())) - pad, int(np.ceil(u.max())) + 1 + pad
    y0, y1 = int(np.floor(v.min())) - pad, int(np.ceil(v.max())) + 1 + pad
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1
