"""push: push the cube, sliding on the support, until its centre lies inside the 10 x 10 cm target zone.

Objects: cube (0), target zone (1, visual only). The goal is the zone's origin. The cube must stay on the
support (not lifted) and be inside the zone's square, measured in the zone's frame. Resets leave room for a
pusher behind the cube and a free path from the cube to the zone.
"""
from __future__ import annotations

import numpy as np

from policies.tasks.resets import GAP, sample_objects, segment_clearance
from policies.tasks.spec import TaskDef, TaskState
from twin_kit import InputError, qconj, qrot

PUSH_DIST = (0.12, 0.24)  # m: cube-to-zone distance at reset
BEHIND = 0.09             # m: free space the pusher needs behind the cube's centre
END_MARGIN = 0.06         # m: the zone this far inside the ring's outer edge (a pushing arm stretched flat drifts)


def sample(ws, rng, profile, objects):
    cube, zone = objects
    for _ in range(50):
        poses = sample_objects(ws, rng, [cube.radius, zone.radius], pair_dist=PUSH_DIST)
        a, b = poses[0, :2], poses[1, :2]
        back = a - (b - a) / np.linalg.norm(b - a) * BEHIND
        start, end = np.hypot(*(back - ws.base[:2])), np.hypot(*(b - ws.base[:2]))
        if (min(segment_clearance(ws, a, b), segment_clearance(ws, back, a)) >= cube.radius + GAP
                and ws.ring[0] <= start and end <= ws.ring[1] - END_MARGIN):   # the pusher's path within reach
            return poses, poses[1, :3].copy()
    raise InputError("no free straight path for pushing the cube to a zone near the robot; "
                     "choose another --robot-pose or widen --ring")


def cube_in_zone(s: TaskState) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) cube centre in the zone's frame, and (N,) whether the cube rests at the zone's height."""
    cube, zone = s.object_pos[:, 0], s.object_pos[:, 1]
    local = qrot(qconj(s.object_quat[:, 1]), cube - zone)
    return local[:, :2], np.abs(local[:, 2]) < 0.01


def success(s: TaskState) -> np.ndarray:
    xy, on = cube_in_zone(s)
    half = np.array(s.objects[1].half_xy)
    return on & (np.abs(xy) <= half).all(1)


def reward(s: TaskState) -> np.ndarray:
    cube, zone = s.object_pos[:, 0], s.object_pos[:, 1]
    d = zone[:, :2] - cube[:, :2]
    dist = np.linalg.norm(d, axis=1)
    behind = cube[:, :2] - d / np.maximum(dist, 1e-9)[:, None] * 0.05          # where a pusher starts
    tool = np.linalg.norm(s.ee_pos[:, :2] - behind, axis=1)
    return 0.5 * (1.0 - np.tanh(10.0 * tool)) + (1.0 - np.tanh(10.0 * dist)) + success(s)


TASK = TaskDef("push", objects=("cube", "target_zone"), robots=("franka",), episode_s=10.0,
               sample=sample, success=success, reward=reward)
