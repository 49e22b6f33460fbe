"""pick_place: pick up the cube and put it into the bin, released (the tool away from it), bin upright.

Objects: cube (0), bin (1, a free body). The goal is the bin's origin at reset. Success: the cube's centre
is inside the bin's walls, its bottom within 3 cm of the bin's floor, the bin upright, and the tool centre
point more than `RELEASE` from the cube's centre (nothing holds it).
"""
from __future__ import annotations

import numpy as np

from policies.tasks.resets import sample_objects
from policies.tasks.spec import TaskDef, TaskState
from twin_kit import qconj, qrot

RELEASE = 0.06      # m: tool-to-cube distance that counts as released
INNER = 0.055       # m: the cube's centre within this of the bin's axis (walls at 0.06)
FLOOR = 0.004       # m: top of the bin's floor above its origin


def sample(ws, rng, profile, objects):
    poses = sample_objects(ws, rng, [o.radius for o in objects])
    return poses, poses[1, :3].copy()


def cube_centre(s: TaskState) -> np.ndarray:
    h = s.objects[0].height if s.objects else 0.04
    return s.object_pos[:, 0] + qrot(s.object_quat[:, 0], np.array([0.0, 0.0, 0.5 * h]))


def in_bin(s: TaskState) -> np.ndarray:
    """(N,) the cube lies inside the upright bin (released or not)."""
    c = cube_centre(s)
    local = qrot(qconj(s.object_quat[:, 1]), c - s.object_pos[:, 1])
    h = s.objects[0].height if s.objects else 0.04
    upright = qrot(s.object_quat[:, 1], np.array([0.0, 0.0, 1.0]))[:, 2] > 0.9
    bottom = local[:, 2] - 0.5 * h
    return upright & (np.abs(local[:, :2]) < INNER).all(1) & (bottom > FLOOR - 0.005) & (bottom < FLOOR + 0.03)


def success(s: TaskState) -> np.ndarray:
    return in_bin(s) & (np.linalg.norm(s.ee_pos - cube_centre(s), axis=1) > RELEASE)


def reward(s: TaskState) -> np.ndarray:
    c = cube_centre(s)
    reach = 1.0 - np.tanh(10.0 * np.linalg.norm(s.ee_pos - c, axis=1))
    lifted = c[:, 2] - s.support_z > 0.06
    to_bin = 1.0 - np.tanh(10.0 * np.linalg.norm(c[:, :2] - s.object_pos[:, 1, :2], axis=1))
    return reach + lifted + np.where(lifted | in_bin(s), to_bin, 0.0) + 2.0 * in_bin(s) + success(s)


TASK = TaskDef("pick_place", objects=("cube", "bin"), robots=("franka", "so101"), episode_s=16.0,
               sample=sample, success=success, reward=reward)
