"""Privileged scripted experts: per task, batched over a TaskEnv's worlds (a small state machine per world), IK
and motion primitives producing joint position targets, gripper included. `python -m policies.experts.evaluate`
measures their success per (task, robot) pair."""
