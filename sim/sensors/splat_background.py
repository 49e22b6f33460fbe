"""The scene's appearance from its Gaussian splats, rendered in the simulation's metric frame per sensor camera.

The simulation scales a bundle's scene uniformly by `metres_per_unit` about the origin (sim/scene_mesh.py
multiplies the collision mesh's vertices by it), so the same similarity applies to the Gaussians: means and
scales times s, rotations, opacities and colours unchanged. Renders use Twin's rasterizer (scenes.rasterize,
backend "auto": gsplat on CUDA, Warp kernels on the CPU) and come back premultiplied (black background) with
expected depth in metres and accumulated alpha, ready for `sim.sensors.compose_frame`.

A moving scene (the bundle's dynamic/, 4D Gaussians) is a background that changes with the simulation time:
`seek(sim_time)` deforms the Gaussians to the capture's instant sim_time seconds after its first frame (held at
its last frame afterwards), so the simulation replays what was filmed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scenes import build_cells, visible_indices
from spatial import BundlePaths
from twin_kit import torch_threads


@dataclass
class SplatRender:
    """Splat renders of V views: colour premultiplied by alpha, expected depth (m, inf where alpha = 0), alpha."""

    rgb: torch.Tensor    # (V, H, W, 3) float32
    depth: torch.Tensor  # (V, H, W, 1) float32 metres (OpenCV z)
    alpha: torch.Tensor  # (V, H, W, 1) float32 in [0, 1]


def bundle_splats(scene_source: str | Path | None) -> Path | None:
    """The splats.ply of a scene bundle directory, or None (mesh files and bundles without splats)."""
    if scene_source is None:
        return None
    p = BundlePaths(Path(scene_source)).splats
    return p if Path(scene_source).is_dir() and p.is_file() else None


def bundle_dynamic(scene_source: str | Path | None):
    """The dynamic splats (scenes.DynamicSplats) of a scene bundle directory that has dynamic/, else None."""
    if scene_source is None or not Path(scene_source).is_dir():
        return None
    if not BundlePaths(Path(scene_source)).dynamic_config.is_file():
        return None
    from scenes import load_dynamic

    return load_dynamic(Path(scene_source))


def gl_to_viewmats(xforms: np.ndarray) -> np.ndarray:
    """(V, 4, 4) OpenCV world-to-camera matrices of (V, 7) camera-to-world transforms in OpenGL camera axes."""
    from twin_kit import CV_TO_GL, qmat

    xforms = np.asarray(xforms, dtype=np.float64).reshape(-1, 7)
    R_cv = qmat(xforms[:, 3:]) @ CV_TO_GL  # camera-to-world rotation, OpenCV axes
    V = np.zeros((len(xforms), 4, 4))
    V[:, :3, :3] = np.swapaxes(R_cv, 1, 2)
    V[:, :3, 3] = -np.einsum("vji,vj->vi", R_cv, xforms[:, :3])
    V[:, 3, 3] = 1.0
    return V


CULL_MIN = 20_000  # Gaussians from which a render first picks those in the view's cells (scenes' culling)
FRAMES_PER_SECOND = 30.0  # playback rate of a dynamic capture without timestamps (its time counts frames)


class SplatBackground:
    """A bundle's Gaussians in metres (static, or dynamic at the time last sought), rendered into sensor cameras
    (one rasterization per view)."""

    def __init__(self, source, metres_per_unit: float = 1.0, backend: str = "auto", device: str = "cpu"):
        """source: a splats.ply path, a scenes.Gaussians or a scenes.DynamicSplats (shown at its first frame
        until `seek`); metres_per_unit as the scene mesh uses."""
        from scenes import DynamicSplats, read_splats_ply

        self.dynamic = source if isinstance(source, DynamicSplats) else None
        self.time = 0.0 if self.dynamic is not None else None  # the dynamic splats' normalised time shown
        if self.dynamic is not None:
            g = self.dynamic.at(0.0)
        else:
            g = source if not isinstance(source, (str, Path)) else read_splats_ply(source)
        self.scale, self.device, self.backend = float(metres_per_unit), torch.device(device), backend
        self._set(g)

    def _set(self, g) -> None:
        s, dev = self.scale, self.device
        self.means = (g.means.float() * s).to(dev).contiguous()
        self.quats = g.quats.float().to(dev).contiguous()
        self.scales = (torch.exp(g.log_scales.float()) * s).to(dev).contiguous()
        self.opacities = torch.sigmoid(g.opacity_logits.float()).to(dev).contiguous()
        self.sh = g.sh.float().to(dev).contiguous()
        self.count = len(g)
        self.cells = build_cells(self.means, self.scales) if self.count >= CULL_MIN else None

    def capture_time(self, sim_time: float) -> float:
        """The dynamic splats' normalised time [0, 1] at `sim_time` seconds (0 = the capture's first frame)."""
        axis = self.dynamic.time
        rate = 1.0 if axis.units == "seconds" else FRAMES_PER_SECOND
        return axis.normalise(axis.start + float(sim_time) * rate)

    def seek(self, sim_time: float) -> bool:
        """Deform dynamic splats to the simulation time; True when the Gaussians changed (static: never)."""
        if self.dynamic is None:
            return False
        t = self.capture_time(sim_time)
        if t == self.time:
            return False
        self._set(self.dynamic.at(t))
        self.time = t
        return True

    @torch.no_grad()
    def render(self, viewmats: np.ndarray, K: np.ndarray, width: int, height: int) -> SplatRender:
        """Render V views: viewmats (V, 4, 4) OpenCV world-to-camera, K (3, 3) with OpenCV pixel centres."""
        from scenes import raster_K, rasterize

        dev = self.means.device
        Kt = torch.as_tensor(raster_K(K), dtype=torch.float32, device=dev)
        rgb, depth, alpha = [], [], []
        for vm in np.asarray(viewmats).reshape(-1, 4, 4):
            g = self._visible(vm, Kt, width, height)
            r = rasterize(*g, torch.as_tensor(vm, dtype=torch.float32, device=dev), Kt, width, height,
                          backend=self.backend)
            rgb.append(r.image)
            alpha.append(r.alpha)
            depth.append(torch.where(r.alpha > 0, r.depth, torch.full_like(r.depth, math.inf)))
        return SplatRender(rgb=torch.stack(rgb).clamp_(0, 1).cpu(), depth=torch.stack(depth).cpu(),
                           alpha=torch.stack(alpha).clamp_(0, 1).cpu())

    def render_camera(self, camera) -> SplatRender:
        """One view through a spatial.Camera (OpenCV world-to-camera R, t and intrinsics)."""
        vm = np.eye(4)
        vm[:3, :3], vm[:3, 3] = camera.R, camera.t
        return self.render(vm[None], camera.K, camera.width, camera.height)

    def _visible(self, viewmat: np.ndarray, K: torch.Tensor, width: int, height: int) -> tuple:
        """(means, quats, scales, opacities, sh) of the Gaussians in the cells the view can see (all of them
        when not culling or when most are in view): a close-up wrist camera projects a few percent of a room."""
        full = (self.means, self.quats, self.scales, self.opacities, self.sh)
        if self.cells is None:
            return full
        idx = visible_indices(self.cells, viewmat, K, width, height)
        if len(idx) > 0.7 * self.count:
            return full
        idx = idx.to(self.means.device)
        with torch_threads(1):  # small gathers: a 2-thread pool costs 5-20x more on a busy 2-core CPU
            return tuple(t.index_select(0, idx) for t in full)
