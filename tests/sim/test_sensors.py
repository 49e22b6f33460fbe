"""sim sensors: cached fixed cameras, segmentation classes, splat compositing by depth, mounted cameras.

Real Newton ray tracing and Twin's real rasterizer (Warp backend on the CPU); one Franka world pair on a
table, shared by the tests.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from spatial.cameras import Camera, look_at


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from sim.physics.world import BoxObject, WorldConfig, build_world

    table = trimesh.creation.box(extents=(1.2, 0.8, 0.75))
    table.apply_translation((0.3, 0.0, 0.375))
    floor = trimesh.creation.box(extents=(4.0, 4.0, 0.02))
    floor.apply_translation((0.0, 0.0, -0.01))
    p = tmp_path_factory.mktemp("scene") / "table.ply"
    trimesh.util.concatenate([table, floor]).export(p)
    return build_world(WorldConfig(scene=str(p), robot="franka", worlds=2,
                                   objects=[BoxObject(half=(0.04, 0.04, 0.04), pos=(0.55, -0.25, 0.79))]))


@pytest.fixture
def posed(world):
    """World 1's arm swung by joint 1 (forward kinematics only); restored afterwards."""
    import newton

    q0 = world.state.joint_q.numpy().copy()
    q = q0.copy()
    q[world.coords_per_world + world.robot_coord_start] += 0.6
    world.state.joint_q.assign(q)
    newton.eval_fk(world.model, world.state.joint_q, world.state.joint_qd, world.state)
    yield world
    world.state.joint_q.assign(q0)
    newton.eval_fk(world.model, world.state.joint_q, world.state.joint_qd, world.state)


def side_camera(w: int = 80, h: int = 60) -> Camera:
    R, t = look_at(np.array([1.3, 0.9, 1.45]), np.array([0.3, 0.0, 1.05]))
    f = 1.0 * w
    return Camera("side", w, h, f, f, (w - 1) / 2, (h - 1) / 2, R, t)


def project(cam: Camera, X: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(X) @ cam.R.T + cam.t
    return np.round(np.c_[cam.fx * x[:, 0] / x[:, 2] + cam.cx, cam.fy * x[:, 1] / x[:, 2] + cam.cy]).astype(int)


def test_fixed_camera_cache_equals_full_trace_and_classes(posed):
    from sim.physics.world import body_poses
    from sim.sensors.cameras import SEG_NONE, SEG_OBJECT, SEG_ROBOT, SEG_SCENE, Sensors, control_maps

    w, cam = posed, side_camera()
    cached = Sensors(w, cam, normals=True, splats=False)
    full = Sensors(w, cam, normals=True, splats=False, cache_static=False)
    a, b = cached.render(), full.render()
    for k in ("rgb", "depth", "seg", "normal"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert not torch.equal(a.seg[0], a.seg[1])  # the worlds differ: world 1's arm is swung
    # classes at known points: object box centre, the table top beside the robot, the sky above everything
    for v in range(2):
        u, y = project(cam, body_poses(w)[v, w.object_bodies[0], :3])[0]
        assert a.seg[v, y, u] == SEG_OBJECT
        u, y = project(cam, np.array([0.75, -0.3, 0.75]))[0]
        assert a.seg[v, y, u] == SEG_SCENE
    assert (a.seg[:, 0, :8] == SEG_NONE).all() and torch.isinf(a.depth[:, 0, :8]).all()
    robot = a.seg == SEG_ROBOT
    assert robot.float().mean() > 0.02
    # robot depth: in front of the camera, nearer than the table behind it, and the normals are unit vectors
    d = a.depth[..., 0][robot]
    assert (d > 0.5).all() and (d < 3.5).all()
    assert torch.allclose(a.normal[robot].norm(dim=-1), torch.ones(()), atol=1e-3)
    assert control_maps(a)["edges"][robot].float().mean() < 0.9


def _wall(cam: Camera, depth: float, x_lo: float, x_hi: float, rgb, spacing: float = 0.015):
    """Opaque flat Gaussians tiling the camera-space rectangle x/z in [x_lo, x_hi], |y/z| <= 0.6 at `depth`,
    `spacing` (and size) a fraction of the depth: about a pixel at a focal length of one image width."""
    from scenes.splats.gaussians import SH_C0, Gaussians

    spacing = spacing * depth
    xs = np.arange(x_lo * depth, x_hi * depth + spacing, spacing)
    ys = np.arange(-0.6 * depth, 0.6 * depth + spacing, spacing)
    gx, gy = np.meshgrid(xs, ys)
    pc = np.c_[gx.ravel(), gy.ravel(), np.full(gx.size, depth)]
    X = (pc - cam.t) @ cam.R  # camera -> world
    n = len(X)
    q = np.tile(np.r_[1.0, 0, 0, 0], (n, 1))
    Rq = cam.R.T  # flat along the camera's z: orient the Gaussians with the camera axes
    from scipy.spatial.transform import Rotation

    xyzw = Rotation.from_matrix(Rq).as_quat()
    q[:] = [xyzw[3], *xyzw[:3]]
    f = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return Gaussians(means=f(X), quats=f(q), log_scales=f(np.log(np.tile([spacing, spacing, 1e-3], (n, 1)))),
                     opacity_logits=f(np.full(n, 6.0)), sh_dc=f(np.tile((np.asarray(rgb) - 0.5) / SH_C0, (n, 1))),
                     sh_rest=torch.zeros(n, 0, 3))


def test_splat_composite_orders_robot_and_scene_by_depth(posed):
    """Left of a column through the robot: a red splat wall far behind it; right: a green wall in front of it.
    The robot must show (as traced) on the left and be hidden on the right; depth and classes follow."""
    from scenes.splats.gaussians import Gaussians
    from sim.sensors.cameras import SEG_ROBOT, SEG_SCENE, Sensors

    w, cam = posed, side_camera()
    plain = Sensors(w, cam, splats=False).render()
    robot = plain.seg == SEG_ROBOT
    split = float(torch.nonzero(robot)[:, 2].float().median())  # a column through the robot
    b = (split - cam.cx) / cam.fx
    dist = np.linalg.norm(cam.center - np.array([0.3, 0.0, 1.05]))
    far, near = dist + 2.5, dist - 0.8
    assert plain.depth[robot].min() > near + 0.1 and plain.depth[robot].max() < far - 0.5
    walls = [_wall(cam, far, -0.8, b, (0.9, 0.1, 0.1)), _wall(cam, near, b, 0.8, (0.1, 0.9, 0.1))]
    g = Gaussians(*(torch.cat(ts) for ts in zip(*(x.tensors() for x in walls))))
    comp = Sensors(w, cam, splats=g).render()
    uncached = Sensors(w, cam, splats=g, cache_static=False).render()  # splats rendered, all traced
    assert all(torch.equal(getattr(comp, k), getattr(uncached, k)) for k in ("rgb", "depth", "seg"))
    cols = torch.arange(cam.width)
    left = (cols < split - 5)[None, None, :].expand_as(robot)   # clear of the near wall's soft left edge
    right = (cols > split + 3)[None, None, :].expand_as(robot)
    assert (robot & left).sum() > 20 and (robot & right).sum() > 20
    # left: the robot in front of the far wall, exactly as traced; the rest is the red wall at its depth
    m = robot & left
    assert torch.equal(comp.rgb[m], plain.rgb[m]) and (comp.seg[m] == SEG_ROBOT).all()
    assert torch.equal(comp.depth[m], plain.depth[m])
    bg = (plain.seg < SEG_ROBOT) & left  # neither robot nor the box object
    assert (comp.seg[bg] == SEG_SCENE).all()
    assert torch.allclose(comp.depth[bg][..., 0], torch.tensor(far, dtype=torch.float32), atol=0.02)
    assert (comp.rgb[bg][:, 0] > 0.8).all() and (comp.rgb[bg][:, 1] < 0.2).all()
    # right: the near wall hides the robot: green, scene, at the wall's depth
    m = right
    assert (comp.seg[m] == SEG_SCENE).all()
    assert torch.allclose(comp.depth[m][..., 0], torch.tensor(near, dtype=torch.float32), atol=0.02)
    assert (comp.rgb[m][:, 1] > 0.8).all() and (comp.rgb[m][:, 0] < 0.2).all()


def test_mounted_camera_follows_its_link(world):
    """The wrist camera keeps its pose in the hand frame as the arm moves, and renders exactly what a fixed
    camera placed at that pose sees."""
    import newton

    from sim.physics.world import frame_poses
    from sim.sensors.cameras import SEG_ROBOT, Sensors
    from sim.sensors.splat_background import gl_to_viewmats
    from twin_kit.rotations import qmat

    w = world
    hand = frame_poses(w, w.robot.camera_body, w.robot.camera_offset)[0]
    Rh, ph = qmat(hand[3:]), hand[:3]
    eye = ph + Rh @ np.array([0.07, 0.0, 0.0])   # beside the hand, looking along the fingers
    R, t = look_at(eye, ph + Rh @ np.array([0.0, 0.0, 0.11]), up=Rh[:, 0])
    cam = Camera("wrist", 64, 48, 40.0, 40.0, 31.5, 23.5, R, t)
    s = Sensors(w, cam, mounted=True, splats=False)
    before = s.render()
    rel0 = _relative(s.camera_transforms()[0], hand)
    q0 = w.state.joint_q.numpy().copy()
    q = q0.copy()
    for v in range(w.n):
        q[v * w.coords_per_world + w.robot_coord_start + np.array([0, 3])] += [0.7, -0.4]
    w.state.joint_q.assign(q)
    newton.eval_fk(w.model, w.state.joint_q, w.state.joint_qd, w.state)
    try:
        after = s.render()
        hand1 = frame_poses(w, w.robot.camera_body, w.robot.camera_offset)[0]
        assert np.linalg.norm(hand1[:3] - hand[:3]) > 0.1            # the link really moved
        assert np.allclose(_relative(s.camera_transforms()[0], hand1), rel0, atol=1e-5)
        assert (before.seg[0] == SEG_ROBOT).float().mean() > 0.03     # the fingers are in view
        assert not torch.equal(before.depth[0], after.depth[0])
        V = gl_to_viewmats(s.camera_transforms()[:1])[0]
        fixed = Sensors(w, Camera("at_link", 64, 48, 40.0, 40.0, 31.5, 23.5, V[:3, :3], V[:3, 3]),
                        splats=False, cache_static=False, worlds=[0]).render()
        assert (fixed.seg[0] == after.seg[0]).float().mean() > 0.995
        same = fixed.seg[0] == after.seg[0]
        assert torch.allclose(fixed.depth[0][same], after.depth[0][same], atol=1e-4, equal_nan=True)
    finally:
        w.state.joint_q.assign(q0)
        newton.eval_fk(w.model, w.state.joint_q, w.state.joint_qd, w.state)


def _relative(cam_xf: np.ndarray, link: np.ndarray) -> np.ndarray:
    """4x4 pose of the camera in the link frame (both (7,) position + quaternion xyzw)."""
    from twin_kit.rotations import qmat

    def mat(x):
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = qmat(x[3:]), x[:3]
        return T

    return np.linalg.inv(mat(link)) @ mat(cam_xf)


def test_static_cache_kept_with_a_support_plane(world):
    """The tasks' invisible support plane is a static shape too: the cached static model holds it, so fixed
    cameras keep their cache (and render exactly what a full trace renders)."""
    from dataclasses import replace

    from sim.physics.world import build_world
    from sim.sensors._trace import static_scene_model
    from sim.sensors.cameras import Sensors

    w = build_world(replace(world.cfg, worlds=1, support_plane=True))
    assert static_scene_model(w) is not None
    cam = side_camera()
    a = Sensors(w, cam, splats=False).render()
    b = Sensors(w, cam, splats=False, cache_static=False).render()
    for k in ("rgb", "depth", "seg"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
