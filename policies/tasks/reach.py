"""reach: bring the tool centre point to a sampled point in front of the robot (within 2 cm) and hold it there.

No objects; the goal is a point in the robot's `reach_box`, clear of the scan.
"""
from __future__ import annotations

import numpy as np

from policies.tasks.resets import sample_target
from policies.tasks.spec import TaskDef, TaskState

TOLERANCE = 0.02  # m


def sample(ws, rng, profile, objects):
    return np.zeros((0, 4)), sample_target(ws, rng, profile.reach_box)


def success(s: TaskState) -> np.ndarray:
    return np.linalg.norm(s.ee_pos - s.goal, axis=1) < TOLERANCE


def reward(s: TaskState) -> np.ndarray:
    return 1.0 - np.tanh(10.0 * np.linalg.norm(s.ee_pos - s.goal, axis=1))


TASK = TaskDef("reach", objects=(), robots=("franka", "so101", "g1_upper"), episode_s=6.0,
               sample=sample, success=success, reward=reward, goal_in_state=True)
