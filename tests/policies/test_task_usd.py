"""`twin export BUNDLE --usd --task pick_place --robot franka`: the task stage read back with usd-core (schemas,
limits and drives equal to the URDF's, object mass and friction equal to the assets'), then loaded by Newton's own
USD importer and stepped under the joint targets of a whole expert episode in Twin's own world, with the robot's
joints and the objects following Twin's trajectories."""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from support.task_scene import desk_bundle, desk_mesh

from policies import PROFILES

SEED = 5
# Tolerances of the replay. Both sides run MuJoCo's C engine with the same options, on models built from the same
# numbers, except that the stage stores them as USD floats (float32: poses, inertia as principal moments + axes,
# gains per degree) and Newton re-derives joint frames and inertia from them: the first steps differ by ~1e-6.
# Contacts (grasp, release, the cube landing in the bin) amplify that. Over this seed's whole episode the arm
# agrees to 2.3e-4 rad (3e-3 rad, 0.17 deg, keeps ~10x headroom); the contact outcomes settle a few mm apart
# (fingers squeezed on the cube 4.1 mm, the cube in the bin 4.5 mm), so fingers and objects get 6 mm: still far
# below what the task tells apart (a 4 cm cube, and the episode must end in the bin in Newton's world too).
JOINT_TOL = 3e-3      # rad, the arm
FINGER_TOL = 6e-3     # m
OBJECT_TOL = 6e-3     # m


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    """The task tests' desk bundle with a few splats added (so the stage carries the splat layer)."""
    from support.small_bundle import small_gaussians

    from scenes import write_splats_ply
    from spatial import BundlePaths, updating_bundle

    root = desk_bundle(tmp_path_factory.mktemp("usd_task") / "desk")
    with updating_bundle(root) as (tmp, _):
        write_splats_ply(BundlePaths(tmp).splats, small_gaussians(n=40, sh_degree=0))
    return root


@pytest.fixture(scope="module")
def stage_path(desk):
    """The stage `twin export` wrote into the bundle (the CLI, in process)."""
    from policies.export.config import stage_name
    from twin_cli.main import main

    assert main(["export", str(desk), "--usd", "--task", "pick_place", "--robot", "franka", "--seed", str(SEED)]) == 0
    path = stage_name(desk, "pick_place", "franka")
    assert path.exists() and path.with_name(f"{path.stem}_splats.usdc").exists()
    return path


@pytest.fixture(scope="module")
def twin_episode(desk):
    """Twin's own world (a plain TaskEnv, as `twin record` builds it) through one expert episode of SEED:
    the joint targets it was given, and its joint and object trajectories."""
    from policies.experts.registry import make_expert
    from policies.tasks.env import TaskEnv
    from policies.tasks.spec import TaskConfig

    env = TaskEnv(TaskConfig(task="pick_place", robot="franka", bundle=str(desk), worlds=1, seed=SEED))
    env.reset([SEED])
    expert = make_expert(env)
    expert.reset()
    w = env.world
    start = {"q": w.state.joint_q.numpy().copy(), "objects": w.state.body_q.numpy()[w.object_bodies].copy()}
    actions, q, objects = [], [], []
    done = False
    while not done:
        a = expert.act()
        _, _, d, info = env.step(a)
        actions.append(np.asarray(a, np.float64)[0])
        q.append(w.state.joint_q.numpy()[:env.action_dim].copy())
        objects.append(w.state.body_q.numpy()[w.object_bodies].copy())
        done = bool(d[0])
    return env, start, bool(info["success"][0]), np.array(actions), np.array(q), np.array(objects)


def _newton_model(path):
    """The stage through Newton's own USD importer (MuJoCo's attributes registered, PhysX's initial joint
    state read, fixed joints merged as Twin's URDF import does)."""
    import newton
    from newton.usd import SchemaResolverNewton, SchemaResolverPhysx

    b = newton.ModelBuilder()
    newton.solvers.SolverMuJoCo.register_custom_attributes(b)
    b.add_usd(str(path), collapse_fixed_joints=True, schema_resolvers=[SchemaResolverNewton(), SchemaResolverPhysx()])
    return b.finalize(device="cpu")


def test_newton_steps_the_stage_like_twins_own_world(stage_path, twin_episode):
    import newton
    from pxr import Usd

    from policies.tasks.pick_place import in_bin
    from policies.tasks.spec import TaskState

    env, start, twin_ok, actions, twin_q, twin_objects = twin_episode
    assert twin_ok, "the expert's episode should succeed in Twin's world"
    m = _newton_model(stage_path)
    labels = list(m.body_label)
    objects = [labels.index(f"/World/Objects/{o.name}") for o in env.objects]
    n = env.action_dim
    # the same reset: robot at home on the same base spot, objects where Twin put them
    assert np.abs(m.joint_q.numpy()[:n] - start["q"][:n]).max() < 1e-5
    # every body's mass, centre of mass and inertia tensor come back as Twin's model has them (float32 round trip)
    tw = env.world.model
    mine = [labels.index(f"/World/Robot/{lbl.split('/')[-1]}") for lbl in tw.body_label[:len(labels) - len(objects)]]
    order = mine + objects
    assert np.allclose(m.body_mass.numpy()[order], tw.body_mass.numpy(), rtol=1e-5)
    assert np.abs(m.body_com.numpy()[order] - tw.body_com.numpy()).max() < 1e-6
    assert np.abs(m.body_inertia.numpy()[order] - tw.body_inertia.numpy()).max() < 1e-6
    state, nxt, control = m.state(), m.state(), m.control()
    newton.eval_fk(m, m.joint_q, m.joint_qd, state)
    assert np.abs(state.body_q.numpy()[objects] - start["objects"]).max() < 1e-5

    solver = newton.solvers.SolverMuJoCo(m, use_mujoco_cpu=True, enable_multiccd=True)
    stage = Usd.Stage.Open(str(stage_path))
    scene = stage.GetPrimAtPath("/World/PhysicsScene")
    # Newton does not import MuJoCo's no-slip pass; the stage carries it (mjc:option:noslip_iterations)
    solver.mj_model.opt.noslip_iterations = scene.GetAttribute("mjc:option:noslip_iterations").Get()
    substeps, dt = env.world.cfg.substeps, env.world.cfg.frame_dt / env.world.cfg.substeps
    assert scene.GetAttribute("mjc:option:timestep").Get() == pytest.approx(dt)
    q, obj = [], []
    for a in actions:
        target = control.joint_target_q.numpy()
        target[:n] = a
        control.joint_target_q.assign(target)
        for _ in range(substeps):
            solver.step(state, nxt, control, None, dt)
            state, nxt = nxt, state
        q.append(state.joint_q.numpy()[:n].copy())
        obj.append(state.body_q.numpy()[objects].copy())
    q, obj = np.array(q), np.array(obj)
    fingers = list(PROFILES["franka"].gripper)
    err = np.abs(q - twin_q)
    assert np.delete(err, fingers, axis=1).max() < JOINT_TOL and err[:, fingers].max() < FINGER_TOL
    assert np.linalg.norm(obj[..., :3] - twin_objects[..., :3], axis=-1).max() < OBJECT_TOL
    end = TaskState(ee_pos=np.zeros((1, 3)), ee_quat=np.array([[0, 0, 0, 1.0]]), object_pos=obj[-1:, :, :3],
                    object_quat=obj[-1:, :, 3:], goal=np.zeros((1, 3)), support_z=env.support_z, objects=env.objects)
    assert in_bin(end).all(), "the cube ends in the bin in Newton's world too"


def test_stage_schemas_match_the_urdf_and_the_assets(desk, stage_path):
    from pxr import Usd, UsdGeom, UsdPhysics, UsdShade, UsdVol

    from policies.tasks.objects import load_object
    from sim import get_robot, model_path
    from spatial import convex_components, read_bundle

    stage = Usd.Stage.Open(str(stage_path))
    assert stage.GetDefaultPrim().GetPath() == "/World"
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0 and UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z
    assert UsdPhysics.GetStageKilogramsPerUnit(stage) == 1.0
    scene = UsdPhysics.Scene(stage.GetPrimAtPath("/World/PhysicsScene"))
    assert tuple(scene.GetGravityDirectionAttr().Get()) == (0, 0, -1)
    assert scene.GetGravityMagnitudeAttr().Get() == pytest.approx(9.81)

    # the scan: splats from the binary layer, the desk's four convex parts as static colliders, the support plane
    splats = UsdVol.ParticleField3DGaussianSplat(stage.GetPrimAtPath("/World/Scan/Splats"))
    assert splats and len(splats.GetPositionsAttr().Get()) == 40
    pieces = [p for p in stage.GetPrimAtPath("/World/Scan/Pieces").GetChildren()]
    m = desk_mesh()
    assert len(pieces) == len(convex_components(m.vertices, m.faces)[0]) == 4
    assert all(p.HasAPI(UsdPhysics.CollisionAPI) and not p.HasAPI(UsdPhysics.RigidBodyAPI) for p in pieces)
    assert stage.GetPrimAtPath("/World/Scan/SupportPlane").HasAPI(UsdPhysics.CollisionAPI)

    # the robot: an articulation whose moving joints are the URDF's, with its limits, and drives with Twin's gains
    robot = stage.GetPrimAtPath("/World/Robot")
    assert robot.HasAPI(UsdPhysics.ArticulationRootAPI)
    urdf = ET.parse(model_path(get_robot("franka"))).getroot()
    moving = {j.get("name"): j for j in urdf.findall("joint") if j.get("type") in ("revolute", "prismatic")}
    joints = {p.GetName(): p for p in stage.GetPrimAtPath("/World/Robot/joints").GetChildren()}
    ke, kd = get_robot("franka").gains
    assert set(joints) == set(moving) | {"root_joint"} and len(moving) == 9
    for name, j in moving.items():
        p = joints[name]
        revolute = j.get("type") == "revolute"
        assert p.IsA(UsdPhysics.RevoluteJoint if revolute else UsdPhysics.PrismaticJoint)
        unit = 180.0 / math.pi if revolute else 1.0
        usd = (UsdPhysics.RevoluteJoint if revolute else UsdPhysics.PrismaticJoint)(p)
        lim = j.find("limit")
        assert usd.GetLowerLimitAttr().Get() == pytest.approx(float(lim.get("lower")) * unit, abs=1e-4)
        assert usd.GetUpperLimitAttr().Get() == pytest.approx(float(lim.get("upper")) * unit, abs=1e-4)
        drive = UsdPhysics.DriveAPI(p, "angular" if revolute else "linear")
        assert drive.GetStiffnessAttr().Get() == pytest.approx(ke / unit, rel=1e-5)
        assert drive.GetDampingAttr().Get() == pytest.approx(kd / unit, rel=1e-5)
        assert drive.GetMaxForceAttr().Get() == pytest.approx(float(lim.get("effort")), rel=1e-5)
        assert p.GetRelationship("physics:body1").GetTargets()
    links = [p for p in robot.GetChildren() if p.HasAPI(UsdPhysics.RigidBodyAPI)]
    assert len(links) == 10 and all(UsdPhysics.MassAPI(p).GetMassAttr().Get() > 0 for p in links)

    # the objects: rigid bodies with the assets' mass and friction
    for name in ("cube", "bin"):
        asset = load_object(name)
        body = stage.GetPrimAtPath(f"/World/Objects/{name}")
        assert body.HasAPI(UsdPhysics.RigidBodyAPI)
        assert UsdPhysics.MassAPI(body).GetMassAttr().Get() == pytest.approx(asset.sim.mass, rel=1e-6)
        for box in body.GetChildren():
            mat, _ = UsdShade.MaterialBindingAPI(box).ComputeBoundMaterial("physics")
            assert UsdPhysics.MaterialAPI(mat.GetPrim()).GetDynamicFrictionAttr().Get() == pytest.approx(
                asset.sim.friction[0], rel=1e-6)
    assert json.loads(json.dumps(read_bundle(desk).manifest["exports"]))["task_usd"] == stage_path.name


def test_plain_exports_and_bad_inputs(desk, tmp_path, capsys):
    from twin_cli.main import main

    assert main(["export", str(desk), "--usd", "--out", str(tmp_path / "scene")]) == 0   # scenes' own export
    from spatial import BundlePaths

    assert BundlePaths(tmp_path / "scene").usd_stage.exists()
    capsys.readouterr()
    arbitrary = desk_bundle(tmp_path / "arbitrary", metric=False)
    for args, msg in [([str(tmp_path / "none"), "--task", "pick_place"], "no such bundle"),
                      ([str(desk), "--task", "pick_place", "--robot", "g1"], "runs on franka, so101, not 'g1'"),
                      ([str(desk), "--task", "reach", "--robot", "r2d2"], "has no task profile"),
                      ([str(arbitrary), "--task", "reach"], "scale is arbitrary; pass --scale"),
                      ([str(desk), "--task", "reach", "--glb"], "export --glb without --task")]:
        assert main(["export", *args, "--usd"]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err, err
