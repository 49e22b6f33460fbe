"""Push expert: the closed gripper lowered behind the cube on the line from the cube to the zone's centre,
pushed along that line; when the cube drifts off it (a pushed face is rarely square to the push), the tool
goes up and comes down behind the cube on the new line.

Phases per world: 0 above the start point behind the cube, 1 down to it, 2 push, 3 up, then 0 again unless the
cube is within `DONE` of the zone's centre, else 4 hold. The fingers are tilted so their tips lead: pushed
higher than its middle, a cube on a high-friction table tips over instead of sliding.
"""
from __future__ import annotations

import numpy as np

from policies.experts.base import Expert, Waypoint
from policies.experts.motion import grasp_yaw, tool_quat
from twin_kit import qmul

TOOL_Z = 0.02       # m: tool centre point above the support while pushing (fingertips ~1 cm above it)
START = 0.07        # m: tool behind the cube's centre before pushing
CONTACT = 0.03      # m: tool-to-cube-centre distance in contact (cube half width + finger half thickness)
DONE = 0.015        # m: cube-to-zone distance that ends the task
OFF_LINE = 0.012    # m: cube this far off the push line: re-approach
PUSH_SPEED = 0.1    # m/s
TILT_DEG = 10.0     # fingertips lead by this tilt. On the demo scene, untilted: 93 of 100 episodes, most failures
                    # cubes tipped over (the fingers' flat side pushes above the cube's middle); 10 deg (with
                    # push.sample's reach checks): 100 of 100; 20 deg bends the arm into its limits near the base


def plan(ex: Expert, s) -> Waypoint:
    env, prof, n = ex.env, ex.profile, ex.n
    cube, zone = s.object_pos[:, 0, :2], s.object_pos[:, 1, :2]
    d = zone - cube
    dist = np.linalg.norm(d, axis=1)
    u = d / np.maximum(dist, 1e-9)[:, None]
    z = env.support_z + TOOL_Z
    mem = ex.memory
    if "u" not in mem:
        mem["u"], mem["yaw"] = np.tile([1.0, 0.0], (n, 1)), np.zeros(n)
    fresh = ex.phase == 0                                   # approaching: aim along the current line
    azimuth = np.arctan2(cube[:, 1] - env.base[1], cube[:, 0] - env.base[0])
    mem["u"][fresh] = u[fresh]
    mem["yaw"][fresh] = grasp_yaw(np.arctan2(u[fresh, 1], u[fresh, 0]), azimuth[fresh], np.pi)
    u0 = mem["u"]
    # the closed fingers' flat side faces the push, tilted so their tips lead: the cube is pushed low
    axis = np.stack([u0[:, 1], -u0[:, 0], np.zeros(n)], 1)
    half = np.radians(TILT_DEG) / 2
    q = qmul(np.concatenate([axis * np.sin(half), np.full((n, 1), np.cos(half))], 1),
             tool_quat(prof.tool_down, mem["yaw"]))

    def at(xy):
        return np.concatenate([xy, np.full((n, 1), z)], 1)

    start = at(cube - u0 * START)
    start[ex.phase >= 2] = ex.anchor[ex.phase >= 2]
    push = at(zone - u0 * CONTACT)
    up = ex.anchor + [0.0, 0.0, 0.1]
    targets = [start + [0, 0, 0.1], start, push, up, up]
    ph = np.minimum(ex.phase, len(targets) - 1)
    pos = np.choose(ph[:, None], targets) if n else np.zeros((0, 3))
    off = np.abs(d[:, 0] * u0[:, 1] - d[:, 1] * u0[:, 0])  # cube's distance from the push line
    behind = ((zone - cube) * u0).sum(1) < 0.0              # pushed past the zone's centre
    at_end = np.linalg.norm(s.ee_pos[:, :2] - push[:, :2], axis=1) < 0.01   # pushed through: the cube was missed
    stop = (ph == 2) & ((dist < DONE) | (off > OFF_LINE) | behind | at_end)
    again = (ph == 3) & (ex.t > 0.0) & (np.linalg.norm(s.ee_pos - up, axis=1) < 0.02) & (dist >= DONE)
    jump = np.select([stop, again], [3, 0], -1)
    wait = np.where(ph == 2, 30.0, 0.0)                     # a push ends on the cube's pose, above
    tol = np.full(n, prof.reach_tol * 2)
    speed = np.where(ph == 2, PUSH_SPEED, prof.speed)
    return Waypoint(pos=pos, quat=q, closed=np.ones(n, bool), wait=wait, tol=tol, speed=speed, jump=jump)


def push_expert(env) -> Expert:
    return Expert(env, plan, final_phase=4)
