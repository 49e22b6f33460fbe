"""Tasks: a typed config over (scene, robot, objects, reset distribution, success, dense reward), batched
over parallel worlds (`TaskEnv`). reach, push and pick_place; see registry.py for which robots each runs on."""
