"""Registry of robot embodiments: where each model file lives, its default pose, end-effector and camera mount.

Models come from installed packages only (example-robot-data's URDFs + meshes); ALOHA's MJCF is read from a
`MENAGERIE_ROOT` checkout or an installed gym-aloha when present. Nothing is downloaded at run time.
"""
from __future__ import annotations

import os
import sysconfig
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twin_kit import InputError, tmul


@dataclass(frozen=True)
class RobotSpec:
    """One embodiment: model file (relative to its package root), the joints Twin drives and their home pose."""

    name: str
    source: str                      # "erd" (example-robot-data), "aloha" (menagerie / gym-aloha MJCF)
    model: str                       # path of the URDF/MJCF inside the source package
    ee_link: str                     # link whose origin is the end-effector (tool centre point)
    camera_link: str                 # link the wrist/head camera is mounted on
    default_q: tuple[float, ...]     # home joint positions, in the model's joint coordinate order
    floating: bool = False           # free base (humanoids) instead of a fixed mount
    base_height: float = 0.0         # base origin above the support surface at the home pose
    arm_dofs: int = 0                # leading dofs the end-effector IK may move (0 = all)
    gains: tuple[float, float] = (400.0, 40.0)  # joint PD stiffness, damping for position targets
    locked: tuple[str, ...] = ()     # joint-name prefixes made fixed joints at angle 0 (merged into their parent)
    slabs: tuple[tuple[str, int, int], ...] = ()  # (collision mesh file name, axis, count): collide with convex
                                                  # slabs of the mesh, not its hull (sim.physics.collision_slabs)
    note: str = ""


ROBOTS: dict[str, RobotSpec] = {s.name: s for s in [
    RobotSpec("franka", "erd", "panda_description/urdf/panda.urdf", "panda_hand_tcp", "panda_hand",
              (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785, 0.04, 0.04), arm_dofs=7, gains=(600.0, 60.0)),
    RobotSpec("so100", "erd", "so_arm_description/urdf/so100.urdf", "jaw", "gripper",
              (0.0, -1.0, 1.0, 0.6, 0.0, 0.0), arm_dofs=5, gains=(60.0, 4.0)),
    RobotSpec("so101", "erd", "so_arm_description/urdf/so101.urdf", "gripper_frame_link", "gripper_link",
              (0.0, -1.0, 1.0, 0.6, 0.0, 0.0), arm_dofs=5, gains=(60.0, 4.0),
              slabs=(("wrist_roll_follower_so101_v1.stl", 2, 8), ("moving_jaw_so101_v1.stl", 1, 8)),
              note="the jaws collide as convex slabs: their hulls would fill the space between them"),
    RobotSpec("ur5e", "erd", "ur_description/urdf/ur5_robot.urdf", "tool0", "wrist_3_link",
              (0.0, -1.57, 1.57, -1.57, -1.57, 0.0), arm_dofs=6, gains=(2000.0, 100.0),
              note="UR5 kinematics from example-robot-data (it ships no UR5e)"),
    RobotSpec("g1", "erd", "g1_description/urdf/g1_29dof_rev_1_0.urdf", "right_rubber_hand", "head_link",
              (), floating=True, base_height=0.793, gains=(200.0, 10.0)),
    RobotSpec("g1_upper", "erd", "g1_description/urdf/g1_29dof_rev_1_0.urdf", "right_rubber_hand", "head_link",
              (0.0,) * 7, base_height=0.793, arm_dofs=7, gains=(200.0, 10.0),
              locked=("left_hip", "left_knee", "left_ankle", "right_hip", "right_knee", "right_ankle", "waist",
                      "left_shoulder", "left_elbow", "left_wrist"),
              note="G1 upper body on a fixed pelvis at standing height: legs, waist and left arm locked "
                   "straight, the right arm's 7 joints driven"),
    RobotSpec("g1_hands", "erd", "g1_description/urdf/g1_29dof_with_hand_rev_1_0.urdf", "right_hand_palm_link",
              "head_link", (), floating=True, base_height=0.793, gains=(200.0, 10.0)),
    RobotSpec("aloha", "aloha", "aloha/aloha.xml", "gripper_link", "gripper_link",
              (0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 0.024, -0.024) * 2, arm_dofs=6, gains=(800.0, 40.0),
              note="ViperX bimanual MJCF from gym-aloha (pip install gym-aloha --no-deps) or MENAGERIE_ROOT"),
]}


def get_robot(name: str) -> RobotSpec:
    """The registered robot `name`, or an InputError listing the known ones."""
    key = name.strip().lower().replace("-", "_")
    key = {"panda": "franka", "ur5": "ur5e", "so_100": "so100", "so_101": "so101"}.get(key, key)
    if key not in ROBOTS:
        raise InputError(f"unknown robot {name!r}; known robots: {', '.join(sorted(ROBOTS))}")
    return ROBOTS[key]


def example_robot_data_root() -> Path:
    """The `share/` directory holding example-robot-data's robots (installed by pip via cmeel)."""
    candidates = [Path(sysconfig.get_paths()["purelib"]) / "cmeel.prefix" / "share"]
    try:
        import cmeel  # noqa: F401  (present when example-robot-data is installed)
        candidates.append(Path(cmeel.__file__).resolve().parent.parent / "cmeel.prefix" / "share")
    except ImportError:
        pass
    for c in candidates:
        if (c / "example-robot-data" / "robots").is_dir():
            return c
    raise InputError("example-robot-data is not installed (pip install example-robot-data)")


def _gym_aloha_assets() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("gym_aloha")
    if spec and spec.origin and (Path(spec.origin).parent / "assets" / "vx300s_left.xml").is_file():
        return Path(spec.origin).parent / "assets"
    return None


def _aloha_mjcf() -> Path:
    root = os.environ.get("MENAGERIE_ROOT")
    if root and (Path(root) / "aloha" / "aloha.xml").is_file():
        return Path(root) / "aloha" / "aloha.xml"
    assets = _gym_aloha_assets()
    if assets is not None:
        return assets / "vx300s_left.xml"
    raise InputError("robot 'aloha' needs its MJCF: pip install gym-aloha --no-deps (its assets only; its "
                     "dependency pins would downgrade mujoco) or set MENAGERIE_ROOT to a mujoco_menagerie checkout")


def mjcf_source(spec: RobotSpec) -> str:
    """MJCF file path or text for an MJCF robot: gym-aloha's two ViperX arms without its task scene."""
    path = _aloha_mjcf()
    if path.name != "vx300s_left.xml":
        return str(path)
    a = path.parent
    return (f'<mujoco><compiler meshdir="{a}"/><include file="{a}/vx300s_dependencies.xml"/><worldbody>'
            f'<include file="{a}/vx300s_left.xml"/><include file="{a}/vx300s_right.xml"/></worldbody></mujoco>')


def model_path(spec: RobotSpec) -> Path:
    """Absolute path of the robot's model file."""
    if spec.source == "aloha":
        return _aloha_mjcf()
    p = example_robot_data_root() / "example-robot-data" / "robots" / spec.model
    if not p.is_file():
        raise InputError(f"robot {spec.name!r}: model file {p} missing from example-robot-data")
    return p


def urdf_source(spec: RobotSpec) -> str:
    """The robot's URDF with package:// URIs made absolute (visual and collision elements as shipped) and
    the spec's `locked` joints made fixed."""
    share = example_robot_data_root()
    text = model_path(spec).read_text().replace("package://", str(share) + "/")
    return _lock_joints(text, spec.locked) if spec.locked else text


def _lock_joints(urdf: str, prefixes: tuple[str, ...]) -> str:
    """The URDF with every moving joint whose name starts with one of `prefixes` made fixed at angle 0."""
    root = ET.fromstring(urdf)
    for j in root.findall("joint"):
        if j.get("type") != "fixed" and j.get("name", "").startswith(prefixes):
            j.set("type", "fixed")
            for tag in ("axis", "limit", "dynamics", "mimic", "safety_controller", "calibration"):
                for e in j.findall(tag):
                    j.remove(e)
    for t in root.findall("transmission"):  # transmissions of locked joints name joints that no longer move
        root.remove(t)
    return ET.tostring(root, encoding="unicode")


def urdf_text(spec: RobotSpec) -> str:
    """The URDF that physics imports: `urdf_source` without visual elements and gazebo plugin blocks.

    Newton imports the collision shapes only; the visual meshes (COLLADA files read through pycollada, STL)
    are decimated and added as visual-only shapes by `sim.physics.visuals`, so what the viewer and sensors
    draw never changes what collides.
    """
    root = ET.fromstring(urdf_source(spec))
    slabs = {name: (axis, count) for name, axis, count in spec.slabs}
    for link in root.findall("link"):
        for v in link.findall("visual"):
            link.remove(v)
        for c in link.findall("collision"):
            mesh = c.find("geometry/mesh")
            if mesh is not None and Path(mesh.get("filename", "")).name in slabs:
                _split_collision(link, c, *slabs[Path(mesh.get("filename")).name])
    for g in root.findall("gazebo"):
        root.remove(g)
    return ET.tostring(root, encoding="unicode")


def _split_collision(link, collision, axis: int, count: int) -> None:
    """Replace a link's mesh `collision` element by one element per convex slab of the mesh."""
    import copy

    from sim.physics.collision_slabs import slab_files

    mesh = collision.find("geometry/mesh")
    files = slab_files(mesh.get("filename"), axis, count)
    at = list(link).index(collision)
    link.remove(collision)
    for k, f in enumerate(files):
        c = copy.deepcopy(collision)
        c.find("geometry/mesh").set("filename", str(f))
        link.insert(at + k, c)


@dataclass
class RobotLayout:
    """Where one robot's pieces sit inside a single world of the finalized model (indices local to a world)."""

    spec: RobotSpec
    body_names: list[str]
    ee_body: int                     # body carrying the end-effector frame (-1: fixed to the world)
    camera_body: int
    coord_count: int
    dof_count: int
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    ee_offset: np.ndarray = field(default_factory=lambda: np.array([0, 0, 0, 0, 0, 0, 1.0]))
    camera_offset: np.ndarray = field(default_factory=lambda: np.array([0, 0, 0, 0, 0, 0, 1.0]))


def rpy_quat(rpy) -> np.ndarray:
    """Quaternion xyzw of URDF roll-pitch-yaw (R = Rz(yaw) Ry(pitch) Rx(roll))."""
    r, p, y = (0.5 * float(a) for a in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
                     cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy])


def fixed_link_offset(urdf: str, link: str) -> tuple[str | None, np.ndarray]:
    """The nearest ancestor of `link` joined by a moving joint (or the root) and link's pose in it.

    Fixed joints are merged away when Newton collapses them, so frames like a tool centre point are kept
    as (surviving body, offset) pairs. Returns the offset as 7 numbers: position + quaternion xyzw.
    """
    root = ET.fromstring(urdf)
    by_child = {j.find("child").get("link"): j for j in root.findall("joint")}
    names = {lk.get("name") for lk in root.findall("link")}
    if link not in names:
        raise InputError(f"link {link!r} not in the robot model")
    pose = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    cur = link
    while cur in by_child and by_child[cur].get("type") == "fixed":
        j = by_child[cur]
        o = j.find("origin")
        xyz = np.array([float(v) for v in (o.get("xyz", "0 0 0") if o is not None else "0 0 0").split()])
        rpy = [float(v) for v in (o.get("rpy", "0 0 0") if o is not None else "0 0 0").split()]
        pose = tmul(np.concatenate([xyz, rpy_quat(rpy)]), pose)
        cur = j.find("parent").get("link")
    return cur, pose
