"""Fusion of depth maps: point cloud on the surface, TSDF mesh close to the true mesh, PLY output, bad input."""
from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest
from support import box_room

from spatial.bundle_files import write_points
from spatial.dense.fusion import FusionConfig, fuse_points, tsdf_mesh
from twin_kit.errors import InputError


@pytest.fixture(scope="module")
def room():
    return box_room.scene(n=6, width=160, height=120)


def _distance_to(mesh, pts):
    sc = o3d.t.geometry.RaycastingScene()
    sc.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                     o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    return sc.compute_distance(o3d.core.Tensor(np.asarray(pts, np.float32))).numpy()


def test_points_lie_on_the_surface(room, tmp_path):
    mesh, cams, images, gts = room
    noisy = [g.copy() for g in gts]
    noisy[0][::17, ::13] *= 1.5  # isolated outliers that statistical removal should drop
    P, C = fuse_points(noisy, images, cams)
    assert P.shape[1] == 3 and C.shape == P.shape and C.dtype == np.uint8 and len(P) > 5000
    d = _distance_to(mesh, P)
    extent = np.linalg.norm(mesh.extents)
    assert np.median(d) < 0.002 * extent and np.percentile(d, 99) < 0.02 * extent
    path = tmp_path / "points.ply"
    write_points(path, P, C)
    back = o3d.io.read_point_cloud(str(path))
    assert np.allclose(np.asarray(back.points), P, atol=1e-4)
    assert np.allclose(np.asarray(back.colors) * 255, C, atol=0.6)


def test_tsdf_mesh_is_close_to_true_mesh(room):
    mesh, cams, images, gts = room
    m = tsdf_mesh(gts, images, cams, cfg=FusionConfig(target_triangles=20_000))
    extent = np.linalg.norm(mesh.extents)
    assert 1000 < len(m.faces) <= 20_000
    assert m.visual.vertex_colors.shape[0] == len(m.vertices)
    d = _distance_to(mesh, m.vertices)
    assert d.mean() < 0.003 * extent, d.mean() / extent
    # it covers the blocks, not only the walls: some vertices lie on the tall block's top (z = 1.1)
    assert np.sum(np.abs(m.vertices[:, 2] - 1.1) < 0.02) > 10


def test_bad_inputs_raise_input_error(room):
    _, cams, images, gts = room
    with pytest.raises(InputError):
        fuse_points([], [], [])
    with pytest.raises(InputError):
        fuse_points([np.full_like(gts[0], np.nan)], images[:1], cams[:1])
    with pytest.raises(InputError):
        tsdf_mesh([np.zeros_like(gts[0])], images[:1], cams[:1])
    with pytest.raises(InputError):
        fuse_points(gts[:2], images[:1], cams[:2])
