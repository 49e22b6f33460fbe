"""Fuse per-view depth maps into a coloured point cloud and a TSDF mesh (Open3D on the CPU).

Scale may be arbitrary before alignment, so voxel sizes are fractions of the scene extent measured from
the depths themselves unless given explicitly.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from spatial.cameras import Camera
from twin_kit import InputError, opt, warn


@dataclass
class FusionConfig:
    """Point-cloud fusion and TSDF meshing settings (sizes relative to the scene extent)."""

    min_confidence: float = opt(0.2, "depth pixels below this confidence are not fused")
    point_voxel_rel: float = opt(1 / 500, "point-cloud voxel size as a fraction of the scene extent")
    outlier_neighbors: int = opt(20, "neighbours used by statistical outlier removal (0 = off)")
    outlier_std: float = opt(2.0, "points further than this many std of mean neighbour distance are removed")
    mesh_voxel_rel: float = opt(1 / 256, "TSDF voxel size as a fraction of the scene extent")
    trunc_voxels: float = opt(4.0, "TSDF truncation distance in voxels")
    min_weight: float = opt(1.0, "TSDF voxels observed fewer times than this are not meshed")
    min_component_rel: float = opt(0.05, "drop connected components with fewer triangles than this fraction "
                                          "of the largest")
    target_triangles: int = opt(200_000, "quadric decimation target triangle count (0 = keep all)")
    min_view_pixels: int = opt(50, "a view with fewer valid depth pixels is left out of the TSDF (with a warning)")


@dataclass
class _View:
    depth: np.ndarray
    confidence: np.ndarray | None
    image: np.ndarray
    camera: Camera


def _fit_camera(cam: Camera, w: int, h: int) -> Camera:
    """The camera for an image resized to (w, h) (pixel-centre convention)."""
    if (cam.width, cam.height) == (w, h):
        return cam
    sx, sy = w / cam.width, h / cam.height
    return replace(cam, width=w, height=h, fx=cam.fx * sx, fy=cam.fy * sy, cx=(cam.cx + 0.5) * sx - 0.5,
                   cy=(cam.cy + 0.5) * sy - 0.5)


def _views(depths, images, cameras, confidences) -> list[_View]:
    """Normalise inputs: depth arrays or DepthResult-like objects (with .depth/.confidence/.camera)."""
    if len(depths) == 0:
        raise InputError("no depth maps to fuse")
    if len(images) != len(depths) or (cameras is not None and len(cameras) != len(depths)):
        raise InputError(f"{len(depths)} depth maps but {len(images)} images / "
                         f"{len(cameras) if cameras is not None else 0} cameras")
    out = []
    for i, d in enumerate(depths):
        conf = confidences[i] if confidences is not None else None
        cam = cameras[i] if cameras is not None else None
        if hasattr(d, "depth"):
            conf = d.confidence if conf is None else conf
            cam = cam if cam is not None else d.camera
            d = d.depth
        if cam is None:
            raise InputError(f"depth map {i} has no camera")
        d = np.asarray(d, dtype=np.float32)
        if d.ndim != 2 or not np.isfinite(d).all():
            raise InputError(f"depth map {i} must be a finite HxW array")
        img = np.asarray(images[i])
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise InputError(f"image {i} must be HxWx3 uint8")
        h, w = d.shape
        if img.shape[:2] != (h, w):
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        if conf is not None:
            conf = np.asarray(conf, dtype=np.float32)
            if conf.shape != d.shape or not np.isfinite(conf).all():
                raise InputError(f"confidence map {i} must be finite and shaped like its depth")
        out.append(_View(d, conf, img, _fit_camera(cam, w, h)))
    return out


def _backproject(view: _View, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points and colours of the masked pixels of a view."""
    v, u = np.nonzero(mask)
    d = view.depth[v, u].astype(np.float64)
    c = view.camera
    Xc = np.stack([(u - c.cx) / c.fx * d, (v - c.cy) / c.fy * d, d], 1)
    return (Xc - c.t) @ c.R, view.image[v, u]


def _masks(views: list[_View], min_confidence: float) -> list[np.ndarray]:
    return [(v.depth > 0) & (v.confidence >= min_confidence if v.confidence is not None else True)
            for v in views]


def scene_extent(points: np.ndarray) -> float:
    """Robust scene size: diagonal of the 1st-99th percentile box of the points."""
    if len(points) == 0:
        raise InputError("no valid depth to fuse (all pixels invalid or below the confidence threshold)")
    lo, hi = np.percentile(points, [1, 99], axis=0)
    ext = float(np.linalg.norm(hi - lo))
    return ext if ext > 0 else 1.0


def fuse_points(depths: Sequence, images: Sequence[np.ndarray], cameras: Sequence[Camera] | None = None,
                cfg: FusionConfig | None = None, confidences: Sequence[np.ndarray] | None = None,
                voxel_size: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Coloured point cloud from depth maps: (points (N, 3) float64, colours (N, 3) uint8).

    depths: HxW arrays (0 = invalid) or DepthResult objects; cameras are rescaled to each depth's size and
    images resized to it. Back-projects confident pixels, voxel-downsamples (voxel_size, else a fraction of
    the extent) and removes statistical outliers.
    """
    import open3d as o3d

    cfg = cfg or FusionConfig()
    views = _views(depths, images, cameras, confidences)
    pts, cols = zip(*[_backproject(v, m) for v, m in zip(views, _masks(views, cfg.min_confidence))])
    P, C = np.concatenate(pts), np.concatenate(cols)
    voxel = voxel_size if voxel_size is not None else cfg.point_voxel_rel * scene_extent(P)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(P))
    pcd.colors = o3d.utility.Vector3dVector(C.astype(np.float64) / 255.0)
    pcd = pcd.voxel_down_sample(voxel)
    if cfg.outlier_neighbors > 0 and len(pcd.points) > cfg.outlier_neighbors:
        pcd, _ = pcd.remove_statistical_outlier(cfg.outlier_neighbors, cfg.outlier_std)
    P = np.asarray(pcd.points)
    C = np.clip(np.asarray(pcd.colors) * 255 + 0.5, 0, 255).astype(np.uint8)
    return P, C


def tsdf_mesh(depths: Sequence, images: Sequence[np.ndarray], cameras: Sequence[Camera] | None = None,
              voxel_size: float | None = None, trunc: float | None = None, cfg: FusionConfig | None = None,
              confidences: Sequence[np.ndarray] | None = None):
    """Coloured triangle mesh (trimesh.Trimesh) by TSDF fusion of depth maps in an Open3D VoxelBlockGrid.

    voxel_size defaults to cfg.mesh_voxel_rel of the scene extent and trunc to cfg.trunc_voxels voxels.
    Small connected components are dropped and the mesh is decimated to cfg.target_triangles. Views without
    usable depth (fewer than cfg.min_view_pixels valid pixels, or none that touch a voxel block) are skipped
    with a warning and listed in the mesh's metadata["skipped_views"]; InputError when no view is left.
    """
    import open3d as o3d
    import open3d.core as o3c
    import trimesh

    cfg = cfg or FusionConfig()
    views = _views(depths, images, cameras, confidences)
    masks = _masks(views, cfg.min_confidence)
    if voxel_size is None:
        sample = np.concatenate([_backproject(v, m & (np.random.default_rng(0).random(m.shape) < 0.05))[0]
                                 for v, m in zip(views, masks)])
        voxel_size = cfg.mesh_voxel_rel * scene_extent(sample)
    if not (voxel_size > 0 and np.isfinite(voxel_size)):
        raise InputError(f"TSDF voxel size must be positive, got {voxel_size}")
    trunc = trunc if trunc is not None else cfg.trunc_voxels * voxel_size
    dmax = float(max(v.depth.max() for v in views)) * 1.01 + trunc
    if dmax <= trunc * 1.01:
        raise InputError("no valid depth to fuse")
    dev = o3c.Device("CPU:0")
    vbg = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"), attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=((1), (1), (3)), voxel_size=float(voxel_size), block_resolution=8, block_count=50_000,
        device=dev)
    mult = float(trunc / voxel_size)
    skipped = []
    for i, (v, m) in enumerate(zip(views, masks)):
        d = np.where(m, v.depth, 0.0).astype(np.float32)
        if int(np.count_nonzero(d)) < cfg.min_view_pixels:
            skipped.append(v.camera.name or f"view {i}")
            continue
        depth = o3d.t.geometry.Image(o3c.Tensor(d, device=dev))
        color = o3d.t.geometry.Image(o3c.Tensor(v.image.astype(np.float32) / 255.0, device=dev))
        K = o3c.Tensor(v.camera.K, dtype=o3c.float64)
        E = o3c.Tensor(v.camera.world_to_cam, dtype=o3c.float64)
        try:
            coords = vbg.compute_unique_block_coordinates(depth, K, E, 1.0, dmax, mult)
        except RuntimeError as e:  # Open3D samples every few pixels: scattered depth may touch no voxel block
            if "no block is touched" not in str(e).lower():
                raise
            skipped.append(v.camera.name or f"view {i}")
            continue
        vbg.integrate(coords, depth, color, K, K, E, 1.0, dmax, mult)
    if skipped:
        warn(f"TSDF fusion skipped {len(skipped)} of {len(views)} views without usable depth: "
             + ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    if len(skipped) == len(views):
        raise InputError("no valid depth to fuse (no view has usable depth)")
    mesh = vbg.extract_triangle_mesh(weight_threshold=float(cfg.min_weight)).to_legacy()
    if len(mesh.triangles) == 0:
        raise InputError("TSDF fusion produced an empty mesh (depths do not overlap or are all invalid)")
    mesh = _drop_small_components(mesh, cfg.min_component_rel)
    if 0 < cfg.target_triangles < len(mesh.triangles):
        mesh = mesh.simplify_quadric_decimation(int(cfg.target_triangles))
        mesh.remove_unreferenced_vertices()
    colors = np.clip(np.asarray(mesh.vertex_colors) * 255 + 0.5, 0, 255).astype(np.uint8)
    out = trimesh.Trimesh(vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.triangles),
                          vertex_colors=colors, process=False)
    out.metadata["skipped_views"] = skipped  # views without usable depth, left out of the fusion
    return out


def _drop_small_components(mesh, min_rel: float):
    """Remove connected components with fewer than min_rel times the triangles of the largest one."""
    labels, counts, _ = mesh.cluster_connected_triangles()
    labels, counts = np.asarray(labels), np.asarray(counts)
    if len(counts) > 1:
        small = counts < min_rel * counts.max()
        mesh.remove_triangles_by_mask(small[labels])
        mesh.remove_unreferenced_vertices()
    return mesh
