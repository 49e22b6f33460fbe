"""Reach expert: move the tool straight to the goal at the robot's speed and hold it there (position IK)."""
from __future__ import annotations

import numpy as np

from policies.experts.base import Expert, Waypoint


def plan(ex: Expert, s) -> Waypoint:
    n = ex.n
    return Waypoint(pos=s.goal, quat=None, closed=None, wait=np.zeros(n), tol=np.full(n, 0.005))


def reach_expert(env) -> Expert:
    return Expert(env, plan, final_phase=0)
