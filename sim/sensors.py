"""Per-world cameras by ray tracing (Newton's SensorCamera, Warp BVH): RGB, depth, segmentation, normals.

A camera is fixed in the scene (a Twin `Camera`, OpenCV convention, world-to-camera) or mounted on a robot
link. Depth is the OpenCV z of the hit (metres, inf where nothing is hit). Segmentation labels every pixel:
0 nothing, 1 scene scan, 2 robot, 3 task objects. `compose_with_splats` puts the ray-traced robot and objects
over a Gaussian-splat render of the scene with correct occlusion by depth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spatial.cameras import Camera

from ._quat import qmat, tmul
from .world import World, frame_poses

SEG_NONE, SEG_SCENE, SEG_ROBOT, SEG_OBJECT = 0, 1, 2, 3
_CV_TO_GL = np.diag([1.0, -1.0, -1.0])  # OpenCV camera axes -> OpenGL (x right, y up, looking along -z)


@dataclass
class SensorFrame:
    """One render of the sensor's worlds: tensors with the view (world) count as first dimension."""

    rgb: torch.Tensor        # (N, H, W, 3) float32 in [0, 1]
    depth: torch.Tensor      # (N, H, W, 1) float32 metres (OpenCV z), inf = no hit
    seg: torch.Tensor        # (N, H, W) int64 class per pixel (SEG_*)
    normal: torch.Tensor | None = None  # (N, H, W, 3) world normals when requested


def _mat_to_quat(R: np.ndarray) -> np.ndarray:
    """Quaternion xyzw of a rotation matrix."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_quat()


def camera_to_world_gl(cam: Camera) -> np.ndarray:
    """(7,) camera-to-world transform of a Twin camera in the renderer's OpenGL camera axes."""
    c2w = cam.cam_to_world
    R = c2w[:3, :3] @ _CV_TO_GL
    return np.concatenate([c2w[:3, 3], _mat_to_quat(R)])


class Sensors:
    """A camera per world, fixed (`camera`) or mounted on the robot's camera link (`camera=None`)."""

    def __init__(self, world: World, camera: Camera, mounted: bool = False, normals: bool = False,
                 worlds: list[int] | None = None):
        import warp as wp
        from newton.sensors import SensorCamera

        self.world, self.camera, self.mounted, self.normals = world, camera, mounted, normals
        self.views = np.arange(world.n) if worlds is None else np.asarray(worlds, dtype=np.int64)
        self.world_indices = wp.array(self.views.astype(np.int32), dtype=wp.int32, device=world.device)
        self.sensor = SensorCamera(world.model, load_textures=False)
        self.sensor.create_default_light()
        W, H = camera.width, camera.height
        # Newton puts pixel centres at +0.5, Twin's cameras (OpenCV) at integer coordinates
        self.rays = SensorCamera.compute_camera_rays_pinhole_opencv(
            W, H, camera.fx, camera.fy, camera.cx + 0.5, camera.cy + 0.5, device=world.device)
        n = len(self.views)
        self.color = self.sensor.allocate_image_color(n, W, H)
        self.depth = self.sensor.allocate_image_depth_forward(n, W, H)
        self.shape = self.sensor.allocate_image_shape_index(n, W, H)
        self.normal = self.sensor.allocate_image_normal(n, W, H) if normals else None
        self._wp = wp
        self._classes = self._shape_classes()
        if mounted:  # camera pose relative to the mount frame, from the given extrinsics at the home pose
            mount = frame_poses(world, world.robot.camera_body, world.robot.camera_offset)[0]
            inv = np.concatenate([-qmat(mount[3:]).T @ mount[:3], mount[3:] * np.array([-1, -1, -1, 1.0])])
            self._rel = tmul(inv, camera_to_world_gl(camera))

    def _shape_classes(self) -> np.ndarray:
        """Segmentation class of every shape index of the model."""
        w = self.world
        body = w.model.shape_body.numpy()
        local = np.where(body >= 0, body % max(w.bodies_per_world, 1), -1)
        cls = np.full(len(body) + 1, SEG_NONE, dtype=np.int64)
        cls[:-1] = np.where(body < 0, SEG_SCENE, SEG_ROBOT)
        if w.object_bodies:
            cls[:-1][np.isin(local, w.object_bodies) & (body >= 0)] = SEG_OBJECT
        return cls

    def camera_transforms(self) -> np.ndarray:
        """(views, 7) camera-to-world transforms (OpenGL camera axes) of the rendered worlds' cameras."""
        w = self.world
        if self.mounted:
            mount = frame_poses(w, w.robot.camera_body, w.robot.camera_offset)[self.views]
            return tmul(mount, np.broadcast_to(self._rel, mount.shape))
        return np.broadcast_to(camera_to_world_gl(self.camera), (len(self.views), 7)).copy()

    def render(self) -> SensorFrame:
        """Ray trace every world's camera at the current state."""
        wp, w = self._wp, self.world
        w.model.bvh_refit_shapes(w.state)
        xf = wp.array(self.camera_transforms().astype(np.float32), dtype=wp.transformf, device=w.device)
        self.sensor.update(w.state, xf, self.rays, color_image=self.color, forward_depth_image=self.depth,
                           shape_index_image=self.shape, normal_image=self.normal,
                           world_indices=self.world_indices)
        packed = self.color.numpy()
        rgba = packed.view(np.uint8).reshape(*packed.shape, 4)
        rgb = torch.from_numpy(rgba[..., :3].astype(np.float32) / 255.0)
        d = self.depth.numpy()
        d = np.where(d > 0, d, np.inf).astype(np.float32)[..., None]
        sidx = self.shape.numpy().astype(np.int64)
        sidx = np.where((sidx >= 0) & (sidx < len(self._classes) - 1), sidx, len(self._classes) - 1)
        seg = torch.from_numpy(self._classes[sidx])
        nrm = torch.from_numpy(self.normal.numpy()) if self.normal is not None else None
        return SensorFrame(rgb=rgb, depth=torch.from_numpy(d), seg=seg, normal=nrm)


def compose_with_splats(frame: SensorFrame, splat_rgb: torch.Tensor, splat_depth: torch.Tensor,
                        splat_alpha: torch.Tensor | None = None) -> torch.Tensor:
    """Robot and objects from the ray tracer over the scene's splat render, whichever is nearer per pixel.

    splat_* are (N, H, W, C) or (H, W, C); the scan's own collision mesh is never shown (splats replace it).
    Where the splats are transparent (alpha < 0.5) the ray-traced scene mesh fills in.
    """
    srgb = splat_rgb.expand_as(frame.rgb) if splat_rgb.dim() == 3 else splat_rgb
    sdep = splat_depth.expand_as(frame.depth) if splat_depth.dim() == 3 else splat_depth
    if splat_alpha is not None:
        sa = splat_alpha.expand_as(frame.depth) if splat_alpha.dim() == 3 else splat_alpha
        sdep = torch.where(sa > 0.5, sdep, torch.full_like(sdep, float("inf")))
    dynamic = (frame.seg >= SEG_ROBOT)[..., None]
    in_front = frame.depth < sdep
    use_sim = (dynamic & in_front) | ((frame.seg == SEG_SCENE)[..., None] & torch.isinf(sdep))
    return torch.where(use_sim, frame.rgb, srgb)


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
