"""policies.tasks.resets: sampled objects rest on the support, clear of the scan, the robot and each other;
reach targets keep clear of the scan; the base chooser stands the robot clear of the scan. Checked with
independent geometry (ray casts, vertex-in-box and separating-axis tests) over many samples, no physics."""
from __future__ import annotations

import numpy as np
import pytest
from support.task_scene import TABLE_Z, desk_distance, desk_mesh, desk_scene

SAMPLES = 200


def robot_column(base_xy, radius: float = 0.1, height: float = 0.9) -> np.ndarray:
    """Stand-in robot surface: points on a vertical cylinder over the base."""
    a, z = np.meshgrid(np.linspace(0, 2 * np.pi, 24, endpoint=False), np.linspace(0.0, height, 10))
    return np.stack([base_xy[0] + radius * np.cos(a.ravel()), base_xy[1] + radius * np.sin(a.ravel()),
                     TABLE_Z + z.ravel()], 1)


def corners(x, y, yaw, hx, hy) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])
    return local @ np.array([[c, s], [-s, c]]) + [x, y]


def rectangles_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex quadrilaterals (4, 2)."""
    for poly in (a, b):
        for i in range(4):
            e = poly[(i + 1) % 4] - poly[i]
            n = np.array([-e[1], e[0]])
            pa, pb = a @ n, b @ n
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


@pytest.fixture(scope="module")
def workspace():
    from policies.tasks.resets import build_workspace

    base = np.array([-0.1, 0.0, TABLE_Z, 0.0])           # robot facing +x, the clutter in its workspace
    return build_workspace(desk_scene(), base, robot_column(base), ring=(0.3, 0.62), sector_deg=70.0)


def test_sampled_objects_rest_on_the_support_clear_of_everything(workspace):
    from policies.tasks.objects import load_object
    from policies.tasks.resets import CELL, sample_objects

    mesh = desk_mesh()
    objects = [load_object("cube"), load_object("bin")]
    clutter = mesh.vertices[mesh.vertices[:, 2] > TABLE_Z + 0.01]
    for seed in range(SAMPLES):
        poses = sample_objects(workspace, np.random.default_rng(seed), [o.radius for o in objects])
        rects = []
        for (x, y, z, yaw), ob in zip(poses, objects, strict=True):
            rect = corners(x, y, yaw, *ob.half_xy)
            rects.append(rect)
            # the table top is under the whole footprint and nothing of the scan rises above it there
            probe = np.concatenate([rect, [[x, y]], 0.5 * (rect + [x, y])])
            hits, _, _ = mesh.ray.intersects_location(np.c_[probe, np.full(len(probe), 5.0)],
                                                      np.tile([0.0, 0.0, -1.0], (len(probe), 1)),
                                                      multiple_hits=False)
            assert len(hits) == len(probe) and np.allclose(hits[:, 2], TABLE_Z, atol=1e-4), (seed, ob.name)
            assert TABLE_Z < z < TABLE_Z + 0.005
            c, s = np.cos(yaw), np.sin(yaw)
            local = (clutter[:, :2] - [x, y]) @ np.array([[c, -s], [s, c]])
            inside = (np.abs(local) <= ob.half_xy).all(1) & (clutter[:, 2] < z + ob.height)
            assert not inside.any(), (seed, ob.name)
            assert np.hypot(x - workspace.base[0], y - workspace.base[1]) >= 0.3 - CELL > 0.1 + ob.radius
        assert not rectangles_overlap(*rects), seed


def test_reset_layouts_are_reproducible_from_the_seed(workspace):
    from policies.tasks.objects import load_object
    from policies.tasks.resets import sample_objects

    radii = [load_object("cube").radius, load_object("target_zone").radius]
    a = sample_objects(workspace, np.random.default_rng(7), radii, pair_dist=(0.12, 0.24))
    b = sample_objects(workspace, np.random.default_rng(7), radii, pair_dist=(0.12, 0.24))
    c = sample_objects(workspace, np.random.default_rng(8), radii, pair_dist=(0.12, 0.24))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0.12 <= np.linalg.norm(a[0, :2] - a[1, :2]) <= 0.24


def test_reach_targets_keep_clear_of_the_scan(workspace):
    from policies.tasks.resets import TARGET_CLEARANCE, sample_target

    targets = np.array([sample_target(workspace, np.random.default_rng(s), ((0.3, 0.62), (-0.3, 0.3), (0.0, 0.5)))
                        for s in range(SAMPLES)])
    dist = desk_distance(targets)
    assert dist.min() >= TARGET_CLEARANCE - 0.006          # the scan's surface samples are ~5 mm apart
    assert (targets[:, 2] < TABLE_Z + TARGET_CLEARANCE + 0.01).any()   # low targets exist, beside the clutter


def test_base_chooser_stands_the_robot_clear_of_the_scan():
    from policies.tasks.resets import choose_base
    from sim import penetrating

    scene = desk_scene()
    arm = robot_column((0.0, 0.0), 0.1, 0.5) - [0, 0, TABLE_Z]
    reach_out = np.c_[np.linspace(0, 0.45, 30), np.zeros(30), np.full(30, 0.12)]   # an arm held low, forward
    pts = np.concatenate([arm, reach_out])
    x, y, z, yaw = next(choose_base(scene, pts, ring=(0.3, 0.62), sector_deg=70.0, base_radius=0.12,
                                    object_radius=0.09, plane=False))
    assert z == TABLE_Z and abs(x) < 0.8 and abs(y) < 0.6
    c, s = np.cos(yaw), np.sin(yaw)
    placed = pts @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1.0]]) + [x, y, z]
    assert not penetrating(scene, placed).any()
    assert np.hypot(x - 0.3, y - 0.25) > 0.1 + 0.125 and np.hypot(x - 0.2, y + 0.3) > 0.1 + 0.07  # off the clutter
