"""What the tasks and experts know about each robot beyond sim's RobotSpec: where its objects and reach targets
may go, its gripper, and how its tool points down for a top-down grasp.

Workspaces are in the robot's base frame (x forward, z up from the support surface the base stands on):
objects go on the support within `ring` metres of the base axis and `sector_deg` either side of forward; reach
targets lie in `reach_box`. Measured with the experts (`python -m policies.experts.evaluate`): the SO-101's
top-down grasps work 0.14-0.26 m from its base axis, the Franka's 0.35-0.65 m.
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
    gripper: tuple[int, ...] = ()                   # robot coordinates that open and close the gripper
    gripper_open: tuple[float, ...] = ()            # their targets when open / closed
    gripper_closed: tuple[float, ...] = ()
    tool_down: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # tool quaternion xyzw pointing down
    grasp_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # object centre in the tool frame when grasped
    speed: float = 0.25                             # expert tool speed (m/s)
    reach_tol: float = 0.01                         # expert waypoint tolerance (m)
    carry_rot_weight: float = 0.3                   # expert IK orientation weight while carrying (m/rad)


PROFILES: dict[str, RobotProfile] = {p.name: p for p in [
    # Franka: the TCP frame points its z axis along the fingers; at the home pose it points down with the
    # fingers closing along world y. Fingers: two prismatic joints, 0.04 m open each.
    RobotProfile("franka", ring=(0.35, 0.62), sector_deg=70.0,
                 reach_box=((0.30, 0.62), (-0.30, 0.30), (0.10, 0.50)),
                 gripper=(7, 8), gripper_open=(0.04, 0.04), gripper_closed=(0.0, 0.0),
                 speed=0.3),
    # SO-101: the gripper frame sits at the fixed jaw's tip, z out of the jaws, x toward the moving jaw; the
    # jaw opens 1.6 cm at 0 rad and 6.7 cm at 1 rad. A grasped cube sits 2.2 cm toward the moving jaw.
    RobotProfile("so101", ring=(0.17, 0.27), sector_deg=75.0,
                 reach_box=((0.14, 0.28), (-0.15, 0.15), (0.05, 0.22)),
                 gripper=(5,), gripper_open=(1.0,), gripper_closed=(0.05,),
                 tool_down=(0.0, 1.0, 0.0, 0.0), grasp_offset=(-0.026, 0.0, -0.010), speed=0.12,
                 reach_tol=0.006, carry_rot_weight=0.03),
    # G1 upper body on a fixed pelvis: the right hand reaches in front of the right shoulder.
    RobotProfile("g1_upper", ring=(0.25, 0.45), sector_deg=60.0,
                 reach_box=((0.22, 0.42), (-0.38, -0.06), (0.80, 1.10)), speed=0.25),
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
