"""The robot of a Twin world as a UsdPhysics articulation: links, joints with limits, drives, home pose.

The links and joints are the robot's URDF as Twin simulates it: Newton's URDF import with fixed joints merged
(a hand and its tool frame ride on the last arm link, a fixed base's root link on the world), locked joints and
collision slabs as sim's registry sets them. So each link carries its merged mass, centre of mass and inertia,
and its collision shapes (meshes collide as their convex hulls) and, when the world has them, its decimated
visual meshes (collision shapes then get purpose "guide").

Layout under `path` (posed at the robot base): one Xform per link (RigidBodyAPI + MassAPI, posed at the home
configuration), `joints/root_joint` fixing the root link to the world, and per joint a RevoluteJoint or
PrismaticJoint whose frame is rotated so that its axis is X, Y or Z (all UsdPhysics allows) with limits, a
`DriveAPI` (force drive; USD's angular units are degrees, so stiffness and damping are per degree) and
PhysX's `JointStateAPI` with the home position. Engine-specific extras: joint armature and passive damping
(`newton:*`, `physxJoint:armature`), MuJoCo gravity compensation (`mjc:gravcomp`, PhysX `disableGravity`), no
self-collision. Frames `tool` (the tool centre point) and `camera_mount` are plain Xforms on their links.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np

from policies.export.prims import IDENTITY, Materials, add_model_shape, custom, gf_quat, rigid_body, set_pose
from twin_kit import tinv, tmul

DEG = math.pi / 180.0
UNLIMITED = 1e9        # |limit| at or above this means the joint has none (Newton stores +-1e10)
NO_EFFORT_LIMIT = 1e5  # Newton's default effort limit is 1e6: at or above this no force limit is authored


def axis_frame(axis) -> tuple[str, np.ndarray]:
    """(USD axis token, rotation xyzw taking that axis onto `axis`): UsdPhysics joints turn about X, Y or Z."""
    a = np.asarray(axis, np.float64)
    a = a / np.linalg.norm(a)
    k = int(np.argmax(np.abs(a)))
    e = np.eye(3)[k]
    c = float(e @ a)
    if c > 1.0 - 1e-9:
        return "XYZ"[k], IDENTITY[3:].copy()
    if c < -1.0 + 1e-9:                                   # half a turn about a perpendicular axis
        return "XYZ"[k], np.array([*np.eye(3)[(k + 1) % 3], 0.0])
    q = np.array([*np.cross(e, a), 1.0 + c])
    return "XYZ"[k], q / np.linalg.norm(q)


def with_rotation(pose, q) -> np.ndarray:
    """`pose` (7) followed by the rotation `q` (xyzw) about its own origin."""
    return tmul(np.asarray(pose, np.float64), np.array([0.0, 0.0, 0.0, *q]))


def prim_name(label: str) -> str:
    """A valid prim name from a Newton label ("panda/panda_link1" -> "panda_link1")."""
    from pxr import Tf

    return Tf.MakeValidIdentifier(label.split("/")[-1])


def _floats(el, key: str) -> np.ndarray:
    return np.array([float(v) for v in ((el.get(key) if el is not None else None) or "0 0 0").split()])


def root_inertial(spec) -> tuple[str, float, np.ndarray, np.ndarray]:
    """(name, mass, centre of mass, inertia about it in the link frame) of the robot's URDF root link.

    A fixed base merges that link into the world, so the Newton model no longer holds its mass; it matters to
    a user who makes the base move. Robots without a URDF root inertial get a 1 kg point."""
    from scipy.spatial.transform import Rotation

    from sim import model_path

    fallback = ("base", 1.0, np.zeros(3), np.eye(3) * 1e-3)
    try:
        root = ET.parse(model_path(spec)).getroot()
    except ET.ParseError:
        return fallback
    if root.tag != "robot":
        return fallback
    children = {j.find("child").get("link") for j in root.findall("joint")}
    link = next((lk for lk in root.findall("link") if lk.get("name") not in children), None)
    inertial = link.find("inertial") if link is not None else None
    if inertial is None or inertial.find("mass") is None:
        return (link.get("name") if link is not None else "base"), *fallback[1:]
    o, i = inertial.find("origin"), inertial.find("inertia")
    g = {k: float(i.get(k, 0.0)) if i is not None else 0.0 for k in ("ixx", "ixy", "ixz", "iyy", "iyz", "izz")}
    full = np.array([[g["ixx"], g["ixy"], g["ixz"]], [g["ixy"], g["iyy"], g["iyz"]], [g["ixz"], g["iyz"], g["izz"]]])
    rot = Rotation.from_euler("xyz", _floats(o, "rpy")).as_matrix()      # URDF rpy: R = Rz(y) Ry(p) Rx(r)
    return link.get("name"), float(inertial.find("mass").get("value")), _floats(o, "xyz"), rot @ full @ rot.T


def _shapes_of(model, body: int) -> list[int]:
    """Shapes of world 0 on local `body` (-1: the robot's fixed base, merged into the world)."""
    sb, sw = model.shape_body.numpy(), model.shape_world.numpy()
    return [s for s in range(model.shape_count) if sb[s] == body and sw[s] == 0]


def _add_link(stage, path: str, model, shapes: list[int], pose, to_link, materials: Materials, condim, gravcomp,
              mass, com, inertia, has_visuals: bool):
    """One link: rigid body at `pose` (in the robot frame) with its shapes (each posed by `to_link(s)`)."""
    from newton import ShapeFlags
    from pxr import UsdGeom

    link = UsdGeom.Xform.Define(stage, path).GetPrim()
    set_pose(link, pose)
    rigid_body(link, mass, com, inertia, gravity_compensated=gravcomp)
    flags = model.shape_flags.numpy()
    collide, visible, site = int(ShapeFlags.COLLIDE_SHAPES), int(ShapeFlags.VISIBLE), int(ShapeFlags.SITE)
    for k, s in enumerate(shapes):
        f = int(flags[s])
        if f & site or not f & (collide | visible):
            continue
        is_collider = bool(f & collide)
        name = f"collision_{k}" if is_collider else f"visual_{k}"
        add_model_shape(stage, f"{path}/{name}", model, s, to_link(s), materials, is_collider,
                        guide=is_collider and has_visuals, mujoco_condim=None if condim[s] == 3 else condim[s])
    return link


def add_articulation(stage, path: str, world, materials: Materials) -> dict:
    """Write world 0's robot at `path`; returns {"links": [...], "joints": [...]} (prim paths)."""
    import newton
    from newton import ShapeFlags
    from pxr import Sdf, UsdGeom, UsdPhysics

    m, lay = world.model, world.robot
    base = np.asarray(world.base_xform, np.float64)
    to_robot = tinv(base)
    robot = UsdGeom.Xform.Define(stage, path).GetPrim()
    set_pose(robot, base)
    UsdPhysics.ArticulationRootAPI.Apply(robot)
    for api in ("NewtonArticulationRootAPI", "PhysxArticulationAPI"):
        robot.AddAppliedSchema(api)
    custom(robot, "physxArticulation:enabledSelfCollisions", "Bool", False)
    custom(robot, "newton:selfCollisionEnabled", "Bool", False)
    mj = getattr(m, "mujoco", None)
    condim = mj.condim.numpy() if mj is not None and hasattr(mj, "condim") else np.full(m.shape_count, 3)
    gravcomp = mj.gravcomp.numpy() if mj is not None and hasattr(mj, "gravcomp") else np.zeros(m.body_count)
    flags = m.shape_flags.numpy()
    has_visuals = any(flags[s] & int(ShapeFlags.VISIBLE) and not flags[s] & int(ShapeFlags.COLLIDE_SHAPES)
                      for s in range(m.shape_count) if m.shape_world.numpy()[s] == 0)
    xf = m.shape_transform.numpy().astype(np.float64)
    bq = world.state.body_q.numpy().reshape(world.n, world.bodies_per_world, 7)[0].astype(np.float64)
    mass, com, inertia = m.body_mass.numpy(), m.body_com.numpy(), m.body_inertia.numpy()

    root_name, root_mass, root_com, root_inertia = root_inertial(lay.spec)
    links = {-1: f"{path}/{prim_name(root_name)}"}
    _add_link(stage, links[-1], m, _shapes_of(m, -1), IDENTITY, lambda s: tmul(to_robot, xf[s]), materials,
              condim, False, root_mass, root_com, root_inertia, has_visuals)
    robot_bodies = [b for b in range(world.bodies_per_world) if b not in set(world.object_bodies)]
    for b in robot_bodies:
        links[b] = f"{path}/{prim_name(m.body_label[b])}"
        _add_link(stage, links[b], m, _shapes_of(m, b), tmul(to_robot, bq[b]), lambda s: xf[s], materials, condim,
                  bool(gravcomp[b] > 0), mass[b], com[b], inertia[b], has_visuals)

    UsdGeom.Scope.Define(stage, f"{path}/joints")
    root_joint = UsdPhysics.FixedJoint.Define(stage, f"{path}/joints/root_joint")
    root_joint.CreateBody1Rel().SetTargets([Sdf.Path(links[-1])])
    _joint_frames(root_joint, base, IDENTITY)
    joints = [root_joint.GetPath().pathString]

    JT = newton.JointType
    jt, parent, child = m.joint_type.numpy(), m.joint_parent.numpy(), m.joint_child.numpy()
    X_p, X_c = m.joint_X_p.numpy().astype(np.float64), m.joint_X_c.numpy().astype(np.float64)
    q_start, qd_start = m.joint_q_start.numpy(), m.joint_qd_start.numpy()
    axes, lower, upper = m.joint_axis.numpy(), m.joint_limit_lower.numpy(), m.joint_limit_upper.numpy()
    ke, kd = m.joint_target_ke.numpy(), m.joint_target_kd.numpy()
    armature, damping = m.joint_armature.numpy(), m.joint_damping.numpy()
    effort, velocity = m.joint_effort_limit.numpy(), m.joint_velocity_limit.numpy()
    q = world.state.joint_q.numpy().astype(np.float64)
    targets = world.control.joint_target_q.numpy().astype(np.float64)
    for j in range(m.joint_count // world.n):
        if child[j] not in links or int(jt[j]) == int(JT.FREE):
            continue
        name = f"{path}/joints/{prim_name(m.joint_label[j])}"
        p = int(parent[j])
        frame0 = tmul(to_robot, X_p[j]) if p < 0 else X_p[j]
        body0 = links[p] if p in links else None
        if int(jt[j]) == int(JT.FIXED):
            joint = UsdPhysics.FixedJoint.Define(stage, name)
            _joint_frames(joint, frame0, X_c[j])
        elif int(jt[j]) in (int(JT.REVOLUTE), int(JT.PRISMATIC)):
            revolute = int(jt[j]) == int(JT.REVOLUTE)
            d, c = int(qd_start[j]), int(q_start[j])
            token, rot = axis_frame(axes[d])
            unit = 1.0 / DEG if revolute else 1.0            # USD: degrees for angles, metres for distances
            joint = (UsdPhysics.RevoluteJoint if revolute else UsdPhysics.PrismaticJoint).Define(stage, name)
            joint.CreateAxisAttr().Set(token)
            _joint_frames(joint, with_rotation(frame0, rot), with_rotation(X_c[j], rot))
            if abs(lower[d]) < UNLIMITED:
                joint.CreateLowerLimitAttr().Set(float(lower[d] * unit))
            if abs(upper[d]) < UNLIMITED:
                joint.CreateUpperLimitAttr().Set(float(upper[d] * unit))
            kind = "angular" if revolute else "linear"
            prim = joint.GetPrim()
            drive = UsdPhysics.DriveAPI.Apply(prim, kind)
            drive.CreateTypeAttr().Set("force")
            drive.CreateStiffnessAttr().Set(float(ke[d] / unit))
            drive.CreateDampingAttr().Set(float(kd[d] / unit))
            drive.CreateTargetPositionAttr().Set(float(targets[c] * unit))
            if effort[d] < NO_EFFORT_LIMIT:
                drive.CreateMaxForceAttr().Set(float(effort[d]))
            prim.AddAppliedSchema(f"PhysicsJointStateAPI:{kind}")
            for api in ("NewtonJointAPI", "PhysxJointAPI"):
                prim.AddAppliedSchema(api)
            custom(prim, f"state:{kind}:physics:position", "Float", float(q[c] * unit))
            custom(prim, f"state:{kind}:physics:velocity", "Float", 0.0)
            custom(prim, "newton:armature", "Float", float(armature[d]))
            custom(prim, "physxJoint:armature", "Float", float(armature[d]))
            if damping[d] > 0:
                custom(prim, "newton:damping", "Float", float(damping[d] / unit))
            if velocity[d] < NO_EFFORT_LIMIT:
                custom(prim, "physxJoint:maxJointVelocity", "Float", float(velocity[d] * unit))
        else:
            raise NotImplementedError(f"joint {m.joint_label[j]}: Newton joint type {int(jt[j])} has no USD writer")
        if body0 is not None:
            joint.CreateBody0Rel().SetTargets([Sdf.Path(body0)])
        joint.CreateBody1Rel().SetTargets([Sdf.Path(links[int(child[j])])])
        joints.append(name)

    for frame, body, offset in (("tool", lay.ee_body, lay.ee_offset), ("camera_mount", lay.camera_body,
                                                                       lay.camera_offset)):
        x = UsdGeom.Xform.Define(stage, f"{links.get(int(body), links[-1])}/{frame}")
        set_pose(x.GetPrim(), np.asarray(offset, np.float64))
    return {"links": [links[-1]] + [links[b] for b in robot_bodies], "joints": joints}


def _joint_frames(joint, frame0, frame1) -> None:
    """localPos/localRot of a joint in body0's frame (the world's when it has none) and in body1's."""
    from pxr import Gf

    joint.CreateLocalPos0Attr().Set(Gf.Vec3f(*(float(v) for v in frame0[:3])))
    joint.CreateLocalRot0Attr().Set(gf_quat(frame0[3:]))
    joint.CreateLocalPos1Attr().Set(Gf.Vec3f(*(float(v) for v in frame1[:3])))
    joint.CreateLocalRot1Attr().Set(gf_quat(frame1[3:]))
