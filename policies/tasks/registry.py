"""Task names, and which robots each runs on."""
from __future__ import annotations

from policies.tasks.robots import robot_name
from policies.tasks.spec import TaskDef
from twin_kit import InputError


def _tasks() -> dict[str, TaskDef]:
    from policies.tasks import pick_place, push, reach

    return {t.name: t for t in (reach.TASK, push.TASK, pick_place.TASK)}


def task_names() -> list[str]:
    return list(_tasks())


def get_task(name: str, robot: str | None = None) -> TaskDef:
    """The task `name`; with `robot`, also check that the task runs on it (one-line errors otherwise)."""
    tasks = _tasks()
    if name not in tasks:
        raise InputError(f"unknown task {name!r}; known tasks: {', '.join(tasks)}")
    task = tasks[name]
    if robot is not None and robot_name(robot) not in task.robots:
        raise InputError(f"task {name!r} runs on {', '.join(task.robots)}, not {robot!r}")
    return task


def task_robot_pairs() -> list[tuple[str, str]]:
    """Every supported (task, robot) pair."""
    return [(t.name, r) for t in _tasks().values() for r in t.robots]
