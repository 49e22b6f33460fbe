"""Pick-and-place expert: top-down grasp of the cube, lift over whatever lies between, lower into the bin,
release, retreat up.

Phases per world: 0 above the cube, 1 down to the grasp, 2 close, 3 lift, 4 over the bin (an arc about the
base axis, so the arm swings round instead of cutting past its base), 5 down into it, 6 open, 7 up and away,
8 hold. The tool's yaw is the cube's face direction nearest the arm's own azimuth and turns with the arm while
carrying (no wrist wind-up); the carrying height lifts the cube's bottom `carry_clear` over the highest scan
surface along the way (the workspace's height map) and the bin's rim. A force-limited gripper (the SO-101's)
closes until it stalls on the cube and then holds a fixed squeeze past that.
"""
from __future__ import annotations

import numpy as np

from policies.experts.base import Expert, Waypoint
from policies.experts.motion import ROT_WEIGHT, grasp_yaw, held_grip, quat_yaw, tool_quat
from policies.tasks.resets import max_height
from sim import get_joint_positions
from twin_kit import qrot

OPEN_S = 0.4


def plan(ex: Expert, s) -> Waypoint:
    env, prof, n = ex.env, ex.profile, ex.n
    cube, bin_ = env.objects
    h = cube.height
    c = s.object_pos[:, 0] + qrot(s.object_quat[:, 0], np.array([0.0, 0.0, 0.5 * h]))     # cube centre
    b = s.object_pos[:, 1]
    azimuth = np.arctan2(c[:, 1] - env.base[1], c[:, 0] - env.base[0])
    if "yaw" not in ex.memory:
        ex.memory["yaw"] = np.zeros(n)
        ex.memory["carry_z"] = np.zeros(n)
    fresh = ex.phase == 0
    ex.memory["yaw"][fresh] = grasp_yaw(quat_yaw(s.object_quat[fresh, 0]), azimuth[fresh])
    ex.memory.setdefault("az0", np.zeros(n))[fresh] = azimuth[fresh]
    # holding the cube, the tool keeps its yaw relative to the arm's azimuth (no wrist wind-up on the way)
    ph = np.minimum(ex.phase, 8)
    az_now = np.arctan2(ex.cmd[:, 1] - env.base[1], ex.cmd[:, 0] - env.base[0])
    turn = np.where(ph >= 3, np.angle(np.exp(1j * (az_now - ex.memory["az0"]))), 0.0)
    q = tool_quat(prof.tool_down, ex.memory["yaw"] + turn)
    off = qrot(q, np.broadcast_to(np.asarray(prof.grasp_offset), (n, 3)))   # tool -> cube centre, world
    for i in np.flatnonzero(fresh):          # carried, the cube's bottom clears the scan and the rim by this
        top = max(max_height(env.workspace, c[i, :2], b[i, :2], cube.radius), s.object_pos[i, 1, 2] + bin_.height)
        ex.memory["carry_z"][i] = top + prof.carry_clear + 0.5 * h - off[i, 2]
    grasp = c - off
    carry = ex.memory["carry_z"][:, None]
    over_bin = np.concatenate([b[:, :2] - off[:, :2], carry], 1)
    drop = over_bin.copy()
    drop[:, 2] = b[:, 2] + 0.004 + 0.5 * h + 0.025 - off[:, 2]        # cube 2.5 cm above the bin's floor
    lift = np.concatenate([ex.anchor[:, :2], carry], 1)
    up = np.array([0.0, 0.0, prof.approach])
    targets = [grasp + up, grasp, ex.anchor, lift, over_bin, drop, drop, drop + up, drop + up]
    pos = np.choose(ph[:, None], targets) if n else np.zeros((0, 3))
    closed = (ph >= 2) & (ph <= 5)
    wait = np.select([ph == 2, ph == 6], [prof.close_s, OPEN_S], 0.0)
    tol = np.where((ph == 1) | (ph == 5), prof.reach_tol * 0.6, prof.reach_tol * 2)
    slow = np.where((ph == 1) | (ph == 5), 0.5 * prof.speed, prof.speed)
    rot_weight = np.where((ph >= 3) & (ph <= 7), prof.carry_rot_weight, ROT_WEIGHT)
    grip = None
    if prof.grip_squeeze > 0:                 # a force-limited gripper: hold at where it stalled on the cube
        jaw = get_joint_positions(env.world)[:, list(prof.gripper)]
        if "stall" not in ex.memory:
            ex.memory["stall"] = jaw.copy()
        ex.memory["stall"][ph == 2] = jaw[ph == 2]
        grip = np.where(((ph >= 3) & (ph <= 5))[:, None], held_grip(prof, ex.memory["stall"]), np.nan)
    return Waypoint(pos=pos, quat=q, closed=closed, wait=wait, tol=tol, speed=slow, rot_weight=rot_weight,
                    grip=grip, polar=ph == 4)


def pick_place_expert(env) -> Expert:
    return Expert(env, plan, final_phase=8)
