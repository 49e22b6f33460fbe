"""What the tasks and experts know about each robot beyond sim's RobotSpec: where its objects and reach targets
may go, its gripper, and how its tool points down for a top-down grasp.

Workspaces are in the robot's base frame (x forward, z up from the support surface the base stands on):
objects go on the support within `ring` metres of the base axis and `sector_deg` either side of forward; reach
targets lie in `reach_box`. Measured by driving the tool top-down to grid points with the expert IK: the
SO-101 reaches top-down grasps 0.10-0.28 m from its base axis (below 5 cm; higher its wrist cannot point
down), the Franka from 0.27 m outward.
"""
from __future__ import annotations

from dataclasses import dataclass

from twin_kit import InputError


@dataclass(frozen=True)
class RobotProfile:
    """Task-side facts about one robot (names as in sim's registry)."""

    name: str
    ring: tuple[float, float]                       # object distance from the base axis (m)
    sector_deg: float                               # objects within this angle either side of forward
    reach_box: tuple[tuple[float, float], ...]      # reach targets: x, y, z ranges in the base frame (m)
    base_radius: float = 0.15                       # free support the base needs around its axis (m)
    gripper: tuple[int, ...] = ()                   # robot coordinates that open and close the gripper
    gripper_open: tuple[float, ...] = ()            # their targets when open / closed
    gripper_closed: tuple[float, ...] = ()
    tool_down: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # tool quaternion xyzw pointing down
    grasp_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # object centre in the tool frame when grasped
    speed: float = 0.25                             # expert tool speed (m/s)
    reach_tol: float = 0.01                         # expert waypoint tolerance (m)
    carry_rot_weight: float = 0.3                   # expert IK orientation weight while carrying (m/rad)
    close_s: float = 0.5                            # expert: seconds to close the gripper on an object
    approach: float = 0.10                          # expert: tool height above a grasp or drop before descending (m)
    carry_clear: float = 0.07                       # expert: carried object's bottom above obstacles and rims (m)
    hold_squeeze: float = 0.0                       # grip_squeeze once the object is held (lifted, carried)
    grip_squeeze: float = 0.0                       # > 0: a closing gripper's target trails its measured position
                                                    # by this much (force-limited grip); 0: the closed target


PROFILES: dict[str, RobotProfile] = {p.name: p for p in [
    # Franka: the TCP frame points its z axis along the fingers; at the home pose it points down with the
    # fingers closing along world y. Fingers: two prismatic joints, 0.04 m open each. Objects start in a
    # +-25 deg sector 0.40-0.58 m out, the patch the front camera frames: over the old 0.32-0.62 m, +-70 deg
    # a 4 cm cube was ~3 px at 96 px and 200 demos left a visuomotor ACT at 0 % (now 56 % on vanilla).
    RobotProfile("franka", ring=(0.40, 0.58), sector_deg=25.0,
                 reach_box=((0.30, 0.62), (-0.30, 0.30), (0.10, 0.50)),
                 gripper=(7, 8), gripper_open=(0.04, 0.04), gripper_closed=(0.0, 0.0),
                 grip_squeeze=0.006, hold_squeeze=0.01, close_s=0.6, speed=0.3),
    # SO-101: the gripper frame sits at the fixed jaw's tip, z out of the jaws, x toward the moving jaw (the
    # fixed jaw's inner face at x = +3 mm); the jaw's tip is 1.6 cm away at 0 rad, 5.5 cm at 0.6 rad. A grasped
    # cube sits 2.6 cm toward the moving jaw, 1 cm behind the tip. Its position drives (60 N m/rad) would
    # squeeze a cube out of soft contacts: the grip is force-limited (grip_squeeze, then hold_squeeze), and
    # it carries low (its wrist cannot point straight down above ~8 cm), tilting as it must.
    RobotProfile("so101", ring=(0.17, 0.27), sector_deg=75.0, base_radius=0.08,
                 reach_box=((0.14, 0.28), (-0.15, 0.15), (0.05, 0.22)),
                 gripper=(5,), gripper_open=(0.6,), gripper_closed=(0.0,),
                 tool_down=(0.0, 1.0, 0.0, 0.0), grasp_offset=(-0.026, 0.0, -0.010), speed=0.12,
                 reach_tol=0.006, carry_rot_weight=0.1, grip_squeeze=0.03, close_s=1.5,
                 hold_squeeze=0.06, carry_clear=0.015, approach=0.06),
    # G1 upper body on a fixed pelvis: the right hand reaches in front of the right shoulder (the box is where
    # position IK from the home pose reached every point of a 6 x 5 x 5 grid exactly).
    RobotProfile("g1_upper", ring=(0.25, 0.45), sector_deg=60.0,
                 reach_box=((0.18, 0.30), (-0.28, -0.06), (0.88, 1.10)), base_radius=0.22, speed=0.25),
]}

ALIASES = {"g1": "g1_upper", "panda": "franka", "so_101": "so101", "so-101": "so101"}


def robot_name(name: str) -> str:
    """The registry name tasks use for `name` (the humanoid `g1` runs as its fixed-pelvis `g1_upper`)."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


def get_profile(name: str) -> RobotProfile:
    """The task profile of robot `name`, or a one-line error listing the robots tasks support."""
    key = robot_name(name)
    if key not in PROFILES:
        raise InputError(f"robot {name!r} has no task profile; tasks run on: {', '.join(sorted(PROFILES))}")
    return PROFILES[key]
