"""sim: scene loading and robot placement, IK reaching, resting contact on a triangle mesh, env API, sensors.

Physics runs on both MuJoCo paths: mujoco_warp (Newton's MuJoCo solver, mujoco_warp kernels on Warp's CPU
device) and mujoco_cpu (MuJoCo's C core stepping all worlds in one batch, Newton's State synced). The first
run on a fresh machine compiles Warp kernels (several minutes on 2 cores); later runs use the kernel cache.
"""
from __future__ import annotations

import json

import mujoco_warp  # noqa: F401  (Newton's MuJoCo solver; a missing install must fail, not skip)
import numpy as np
import pytest
import trimesh

from twin_kit.errors import InputError


def table_scene() -> trimesh.Trimesh:
    """A scanned-desk stand-in: a 1.2 x 0.8 m table top at 0.75 m on a 4 x 4 m floor, one triangle mesh."""
    table = trimesh.creation.box(extents=(1.2, 0.8, 0.75))
    table.apply_translation((0.3, 0.0, 0.375))
    floor = trimesh.creation.box(extents=(4.0, 4.0, 0.02))
    floor.apply_translation((0.0, 0.0, -0.01))
    return trimesh.util.concatenate([table, floor])


@pytest.fixture(scope="module")
def table_ply(tmp_path_factory):
    p = tmp_path_factory.mktemp("scene") / "table.ply"
    table_scene().export(p)
    return p


def make_bundle(root, mesh: trimesh.Trimesh | None, metric: bool, plane: dict | None = None):
    from spatial.bundle import finalize_manifest, new_manifest

    root.mkdir(parents=True)
    m = new_manifest(input="test")
    m["scale"] = {"metric": metric, "source": "test" if metric else "arbitrary",
                  "metres_per_unit": 1.0 if metric else None}
    if plane:
        m["support_plane"] = plane
    if mesh is not None:
        mesh.export(root / "collision.ply")
    finalize_manifest(root, m)
    return root


# ---------------------------------------------------------------- input checks (no physics)

def test_unknown_robot_lists_known_ones():
    from sim.physics.robots import get_robot

    with pytest.raises(InputError, match="known robots: .*franka.*so101.*ur5e"):
        get_robot("wall-e")
    assert get_robot("panda").name == "franka"


def test_registry_models_are_installed():
    from sim.physics.robots import ROBOTS, fixed_link_offset, model_path, urdf_text

    for name in ("franka", "so100", "so101", "ur5e", "g1"):
        text = urdf_text(ROBOTS[name])
        assert "package://" not in text and "<visual" not in text
        assert model_path(ROBOTS[name]).is_file()
    link, off = fixed_link_offset(urdf_text(ROBOTS["franka"]), "panda_hand_tcp")
    assert link == "panda_link7" and off[2] == pytest.approx(0.107 + 0.1034, abs=1e-6)


def test_scene_scale_and_missing_mesh(tmp_path):
    from sim.physics.scene_mesh import load_scene

    arb = make_bundle(tmp_path / "arb", table_scene(), metric=False)
    with pytest.raises(InputError, match="scale is arbitrary; pass --scale"):
        load_scene(arb)
    s = load_scene(arb, scale=0.5)
    assert s.support_height == pytest.approx(0.375, abs=0.01)
    assert np.allclose(s.support_center, [0.15, 0.0], atol=0.02)
    metric = make_bundle(tmp_path / "met", table_scene(), metric=True,
                         plane={"normal": [0, 0, 1], "offset": -0.75, "found": True, "centroid": [0.2, 0.1, 0.75]})
    s = load_scene(metric)
    assert s.support_height == pytest.approx(0.75) and np.allclose(s.support_center, [0.2, 0.1])
    with pytest.raises(InputError, match="no collision mesh"):
        load_scene(make_bundle(tmp_path / "empty", None, metric=True))


def test_support_estimate_prefers_table_over_floor():
    from sim.physics.scene_mesh import estimate_support

    m = table_scene()
    h, c = estimate_support(np.asarray(m.vertices), np.asarray(m.faces))
    assert h == pytest.approx(0.75, abs=0.01) and np.allclose(c, [0.3, 0.0], atol=0.02)
    floor = trimesh.creation.box(extents=(4.0, 4.0, 0.02))
    h, _ = estimate_support(np.asarray(floor.vertices), np.asarray(floor.faces))
    assert h == pytest.approx(0.01, abs=0.005)


def test_mesh_import_glb_obj_usd(tmp_path):
    from pxr import Usd, UsdGeom

    from sim.physics.scene_mesh import load_scene

    m = table_scene()
    m.export(tmp_path / "t.obj")
    y_up = m.copy()
    y_up.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))  # +Z up -> +Y up
    y_up.export(tmp_path / "t.glb")
    stage = Usd.Stage.CreateNew(str(tmp_path / "t.usda"))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 0.01)  # centimetres
    mesh = UsdGeom.Mesh.Define(stage, "/scene")
    mesh.GetPointsAttr().Set([tuple(v) for v in (m.vertices * 100.0).tolist()])
    mesh.GetFaceVertexCountsAttr().Set([3] * len(m.faces))
    mesh.GetFaceVertexIndicesAttr().Set(m.faces.ravel().tolist())
    stage.Save()
    for name in ("t.obj", "t.glb", "t.usda"):
        s = load_scene(tmp_path / name)
        assert s.support_height == pytest.approx(0.75, abs=0.01), name
        assert s.vertices[:, 2].max() == pytest.approx(0.75, abs=1e-3), name
    with pytest.raises(InputError, match="no such"):
        load_scene(tmp_path / "missing.glb")


def test_robot_inside_scan_is_refused(table_ply):
    from sim.physics.world import WorldConfig, build_world

    with pytest.raises(InputError, match="inside the scan's geometry"):
        build_world(WorldConfig(scene=str(table_ply), robot="franka", robot_pose=(0.3, 0.0, 0.2, 0.0)))


# ---------------------------------------------------------------- physics

PHYSICS = ["mujoco_warp", "mujoco_cpu"]


@pytest.fixture(scope="module", params=PHYSICS)
def franka_world(table_ply, request):
    from sim.physics.world import WorldConfig, build_world

    return build_world(WorldConfig(scene=str(table_ply), robot="franka", worlds=2, solver=request.param))


def test_robot_stands_on_the_table(franka_world):
    w = franka_world
    assert w.base_xform[2] == pytest.approx(0.75, abs=1e-3)
    assert np.allclose(w.base_xform[:2], [0.3, 0.0], atol=0.02)


def test_reach_end_effector_target_within_5mm(franka_world):
    from sim.physics import control
    from sim.physics.env import EnvConfig, SimEnv
    from sim.physics.world import step

    env = SimEnv(franka_world, EnvConfig(action="ee"))
    env.reset()
    p0, r0 = control.ee_pose(env.world)
    goal = p0 + np.array([[0.08, 0.10, -0.08], [-0.05, -0.12, 0.05]])
    lo, hi = np.asarray(env.world.robot.lower), np.asarray(env.world.robot.upper)
    for _ in range(60):
        control.ik_targets(env.world, goal, r0)
        step(env.world)
        t = control.get_joint_targets(env.world)
        assert (t >= lo - 1e-6).all() and (t <= hi + 1e-6).all()
    p, _ = control.ee_pose(env.world)
    err = np.linalg.norm(p - goal, axis=1)
    assert (err < 0.005).all(), err
    q = control.get_joint_positions(env.world)
    assert (q >= lo - 0.01).all() and (q <= hi + 0.01).all()


def test_joint_targets_clip_to_limits_and_are_tracked(franka_world):
    from sim.physics import control
    from sim.physics.env import SimEnv

    env = SimEnv(franka_world)
    env.reset()
    a = control.get_joint_targets(env.world)
    a[:, 0] = [0.4, 10.0]           # world 1 asks far beyond joint 1's limit (2.8973)
    for _ in range(40):
        obs, rew, term, trunc, info = env.step(a)
    q = obs["joint_pos"].numpy()
    assert q[0, 0] == pytest.approx(0.4, abs=0.01)
    assert obs["joint_target"][1, 0].item() == pytest.approx(2.8973, abs=1e-5)   # clipped to the limit
    assert 1.0 < q[1, 0] <= 2.8973 + 0.005
    assert obs["ee_pos"].shape == (2, 3) and rew.shape == (2,)
    obs = env.reset(np.array([True, False]))
    assert obs["joint_pos"][0, 0].item() == pytest.approx(0.0, abs=1e-4)
    assert obs["joint_pos"][1, 0].item() == pytest.approx(q[1, 0], abs=1e-4)


def test_reset_of_some_worlds_then_step(franka_world):
    from sim.physics import control
    from sim.physics.env import SimEnv

    env = SimEnv(franka_world)
    env.reset()
    home = env.observe()["joint_pos"].numpy().copy()
    a = control.get_joint_targets(env.world)
    a[:, 0] += 0.5
    a[:, 3] += 0.3
    for _ in range(30):
        obs, *_ = env.step(a)
    moved = obs["joint_pos"].numpy().copy()
    assert (moved[:, 0] - home[:, 0] > 0.4).all()
    env.reset(np.array([True, False]))
    a[0] = env.observe()["joint_target"][0].numpy()         # world 0 holds its home pose, world 1 its target
    for _ in range(5):
        obs, *_ = env.step(a)
    q = obs["joint_pos"].numpy()
    assert np.abs(q[0] - home[0]).max() < 2e-3, q[0] - home[0]      # continued from the reset state
    assert np.abs(q[1] - moved[1]).max() < 0.02, q[1] - moved[1]    # untouched by the reset (still settling)


def test_gymnasium_vector_env(franka_world):
    import gymnasium as gym

    from sim.physics.env import EnvConfig, SimEnv, gym_vector_env

    inner = SimEnv(franka_world, EnvConfig(max_steps=3))
    venv = gym_vector_env(inner)
    assert isinstance(venv, gym.vector.VectorEnv) and venv.num_envs == 2
    obs, _ = venv.reset(seed=0)
    assert obs.shape == venv.observation_space.shape and np.isfinite(obs).all()
    home = inner.observe()["joint_target"].numpy()
    act = home.astype(np.float32)
    act[:, 0] += 0.2
    for k in range(3):
        obs, rew, term, trunc, _ = venv.step(act)
        assert obs.shape == (2, venv.single_observation_space.shape[0]) and rew.shape == (2,)
        assert trunc.all() == (k == 2) and not term.any()
    obs, rew, term, trunc, _ = venv.step(act)    # finished worlds were reset before this step
    assert not trunc.any() and (inner.steps == 1).all()


@pytest.mark.parametrize("solver", PHYSICS)
def test_box_dropped_on_scanned_desk_rests_on_it(table_ply, solver):
    from sim.physics.world import BoxObject, WorldConfig, body_poses, build_world, step

    half = 0.03
    # one box on the desk, one on the floor beside it, where the scan's convex hull would hold it in the air
    w = build_world(WorldConfig(scene=str(table_ply), robot=None, worlds=2, solver=solver,
                                objects=[BoxObject(half=(half, half, half), pos=(0.5, 0.2, 0.9)),
                                         BoxObject(half=(half, half, half), pos=(-1.2, 1.2, 0.15))]))
    step(w, 80)
    for body, (x, y, top) in zip(w.object_bodies, [(0.5, 0.2, 0.75), (-1.2, 1.2, 0.0)]):
        pos = body_poses(w)[:, body, :3]
        assert np.abs(pos[:, 2] - (top + half)).max() < 0.005, pos     # neither sinking nor floating
        assert np.allclose(pos[:, :2], [x, y], atol=0.01)
        v = w.state.body_qd.numpy().reshape(2, -1, 6)[:, body]
        assert np.abs(v).max() < 0.05


def test_sensors_rgb_depth_segmentation(franka_world):
    import torch

    from sim.sensors.cameras import SEG_ROBOT, SEG_SCENE, Sensors, compose_with_splats, control_maps
    from spatial.cameras import Camera, look_at

    R, t = look_at(np.array([1.8, 1.2, 1.5]), np.array([0.3, 0.0, 0.9]))
    cam = Camera("c", 64, 48, 50.0, 50.0, 31.5, 23.5, R, t)
    f = Sensors(franka_world, cam).render()
    assert f.rgb.shape == (2, 48, 64, 3) and f.depth.shape == (2, 48, 64, 1) and f.seg.shape == (2, 48, 64)
    robot, scene = (f.seg == SEG_ROBOT), (f.seg == SEG_SCENE)
    assert robot.float().mean() > 0.02 and scene.float().mean() > 0.2
    # scene pixels: depth agrees with an independent ray cast of the same mesh (trimesh + embree)
    mesh = table_scene()
    ys, xs = np.nonzero(scene[0].numpy())
    dirs_cam = np.stack([(xs - cam.cx) / cam.fx, (ys - cam.cy) / cam.fy, np.ones(len(xs))], 1)
    dirs = dirs_cam @ cam.R
    loc, idx, _ = mesh.ray.intersects_location(np.repeat(cam.center[None], len(xs), 0), dirs, multiple_hits=False)
    z = np.full(len(xs), np.inf)
    z[idx] = (loc - cam.center) @ cam.R[2]
    got = f.depth[0, ys, xs, 0].numpy()
    ok = np.isfinite(z)
    assert np.median(np.abs(got[ok] - z[ok])) < 1e-3
    far = torch.full((48, 64, 1), 100.0)
    comp = compose_with_splats(f, torch.zeros(48, 64, 3), far)
    assert torch.equal(comp[robot], f.rgb[robot]) and (comp[scene] == 0).all()
    maps = control_maps(f)
    assert maps["edges"].any() and maps["depth"].shape == f.depth.shape
    json.dumps({"ok": True})


@pytest.mark.parametrize("name", ["so100", "so101", "ur5e", "g1", "aloha"])
def test_other_embodiments_load_and_step(name):
    from sim.physics import control
    from sim.physics.world import WorldConfig, build_world, step

    if name == "aloha":
        import gym_aloha  # noqa: F401  (its MJCF assets; installed with --no-deps)
    w = build_world(WorldConfig(scene=None, robot=name, worlds=1))
    assert w.robot.dof_count >= 5 and len(w.robot.lower) == w.robot.dof_count
    p0, _ = control.ee_pose(w)
    step(w, 5)
    assert np.isfinite(w.state.body_q.numpy()).all()
    if not w.robot.spec.floating:  # fixed arms hold their home pose under gravity compensation
        assert np.linalg.norm(control.ee_pose(w)[0] - p0) < 0.02


def test_twin_sim_cli_writes_video(table_ply, tmp_path, capsys):
    import av

    from twin_cli.main import main

    out = tmp_path / "v.mp4"
    assert main(["sim", str(table_ply), "--robot", "wall-e", "--out", str(out)]) == 2
    assert "known robots" in capsys.readouterr().err
    assert main(["sim", str(table_ply), "--seconds", "0.4", "--fps", "10", "--width", "96", "--out", str(out),
                 "--image", str(tmp_path / "f.png"), "--solver", "mujoco_cpu", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["frames"] == 4 and res["solver"] == "mujoco_cpu" and (tmp_path / "f.png").exists()
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape[1] == 96
    assert frames[0].std() > 5  # robot and table visible, not a blank frame


# ---------------------------------------------------------------- mujoco_cpu: MuJoCo's C core, batched

def test_solver_choice_per_device(monkeypatch, tmp_path):
    from sim.physics.mujoco_batch import AUTO_MAX_PIECES
    from sim.physics.scene_mesh import SceneMesh
    from sim.physics.world import resolve_solver
    from spatial import ConvexConfig

    monkeypatch.setenv("TWIN_CACHE", str(tmp_path))                  # pieces of meshes without a bundle

    assert resolve_solver("auto", "cpu") == "mujoco_cpu"
    assert resolve_solver("auto", "cuda:0") == "mujoco_warp"
    assert resolve_solver("xpbd", "cpu") == "xpbd"
    table = table_scene()
    assert resolve_solver("auto", "cpu", SceneMesh(table.vertices, table.faces, 0.75, np.zeros(2), "t")) == \
        "mujoco_cpu"                                                   # two convex pieces
    x, y = np.meshgrid(np.linspace(0, 1, 41), np.linspace(0, 1, 41))
    z = 0.05 * np.sin(6 * x) * np.cos(5 * y)                           # a scan-like open surface: 3,200 triangles
    i = np.arange(40 * 40).reshape(40, 40) + np.arange(40)[:, None]
    quads = np.stack([i, i + 1, i + 42, i + 41], -1).reshape(-1, 4)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    scan = SceneMesh(np.stack([x, y, z], -1).reshape(-1, 3), faces, 0.0, np.zeros(2), "s")
    scan.convex_pieces(ConvexConfig(threshold=0.2, preprocess_resolution=30))   # CoACD, coarse: fast
    assert resolve_solver("auto", "cpu", scan) == "mujoco_cpu"           # a few convex pieces, not a prism a face
    k = AUTO_MAX_PIECES + 1                                            # gravel: k separate tetrahedra
    tet = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]) * 0.01
    tf = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    gravel = SceneMesh((tet + 0.02 * np.arange(k)[:, None, None] * np.array([1.0, 0, 0])).reshape(-1, 3),
                       (tf + 4 * np.arange(k)[:, None, None]).reshape(-1, 3), 0.0, np.zeros(2), "g")
    assert resolve_solver("auto", "cpu", gravel) == "mujoco_warp"        # too many pieces for MuJoCo's C core


def test_scene_pieces_convex_parts_and_prisms():
    from sim.physics.mujoco_batch import scene_pieces

    m = table_scene()
    pieces = scene_pieces(m.vertices, m.faces)
    assert len(pieces) == 2 and all(len(p) == 8 for p in pieces)      # table and floor: one hull each
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    open_box = box.faces[box.face_normals[:, 2] < 0.5]                 # no lid: not convex, one prism a face
    pieces = scene_pieces(box.vertices, open_box, depth=0.02)
    assert len(pieces) == len(open_box) and all(p.shape == (6, 3) for p in pieces)
    n = trimesh.Trimesh(box.vertices, open_box).face_normals
    assert np.allclose(pieces[0][3:] - pieces[0][:3], -0.02 * n[0], atol=1e-9)   # prisms grow inward


def test_mujoco_cpu_is_mujoco_on_the_same_mjcf(table_ply):
    """Twin's batch agrees with mj_step on the MJCF it runs: robot joints, body poses, a free box's twist."""
    import mujoco

    from sim.physics import control
    from sim.physics.world import BoxObject, WorldConfig, body_poses, build_world, step

    w = build_world(WorldConfig(scene=str(table_ply), robot="franka", worlds=2, solver="mujoco_cpu",
                                objects=[BoxObject(pos=(0.55, -0.3, 0.85))]))
    m = mujoco.MjModel.from_xml_string(w.solver.mjcf)
    assert m.opt.timestep == pytest.approx(w.cfg.frame_dt / w.cfg.substeps)
    on_world = [m.geom(g).name for g in range(m.ngeom) if m.geom_bodyid[g] == 0]
    pieces = [g for g in on_world if g.startswith("scene_piece")]
    assert len(pieces) == 2 and len(on_world) > 2, on_world          # table + floor; the arm's base link kept
    box = w.object_bodies[0]
    free = int(np.nonzero(m.jnt_type == mujoco.mjtJoint.mjJNT_FREE)[0][0])
    box_id = m.jnt_bodyid[free]
    ee_name = w.robot.body_names[w.robot.ee_body]
    ee_id = [b for b in range(m.nbody) if m.body(b).name.endswith(ee_name)][0]
    datas = [mujoco.MjData(m) for _ in range(2)]
    arm = m.jnt_qposadr[m.actuator_trnid[:, 0]]                     # joint of each position actuator
    for d in datas:                                                  # Newton's home state, written by hand
        d.qpos[arm] = w.default_q[w.robot_coord_start:w.robot_coord_start + m.nu]
        d.qpos[m.jnt_qposadr[free]:m.jnt_qposadr[free] + 7] = np.float32([0.55, -0.3, 0.85, 1.0, 0.0, 0.0, 0.0])
    q0 = control.get_joint_targets(w)
    for k in range(40):
        q = q0.copy()
        q[:, 0] += 0.4 * np.sin(0.1 * k) * np.array([1.0, -1.0])
        q[:, 3] += 0.3 * np.sin(0.07 * k)
        control.set_joint_targets(w, q)
        step(w)
        for i, d in enumerate(datas):
            d.ctrl[:] = control.get_joint_targets(w)[i]
            mujoco.mj_step(m, d, w.cfg.substeps)
    jq = w.state.joint_q.numpy().reshape(2, -1)
    bq = body_poses(w)
    bqd = w.state.body_qd.numpy().reshape(2, -1, 6)
    assert np.abs(bq[:, box, 2] - 0.775).max() < 0.005             # the box fell onto the desk meanwhile
    for i, d in enumerate(datas):
        mujoco.mj_forward(m, d)
        assert np.allclose(jq[i, :m.nu], d.qpos[arm], atol=1e-5)
        assert np.allclose(bq[i, box, :3], d.xpos[box_id], atol=1e-5)
        quat = d.xquat[box_id]
        assert np.allclose(bq[i, box, 3:], np.r_[quat[1:], quat[0]], atol=1e-5) or \
            np.allclose(bq[i, box, 3:], -np.r_[quat[1:], quat[0]], atol=1e-5)
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_BODY, box_id, vel, 0)   # [angular; linear] at the COM
        assert np.allclose(bqd[i, box], np.r_[vel[3:], vel[:3]], atol=1e-4)
        tcp = d.xpos[ee_id] + d.xmat[ee_id].reshape(3, 3) @ w.robot.ee_offset[:3]
        assert np.allclose(control.ee_pose(w)[0][i], tcp, atol=1e-5)
