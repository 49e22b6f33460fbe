"""policies.tasks: success predicates and rewards on hand-placed states, task objects read from assets/, and
the task registry. No physics here: each state is written down."""
from __future__ import annotations

import numpy as np
import pytest

from twin_kit import InputError


def yaw_q(yaw: float) -> np.ndarray:
    return np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])


def state(ee, objects=(), goal=(0.0, 0.0, 0.0), names=()):
    """A one-world TaskState: ee position, objects as (x, y, z, yaw) or (pos, quat)."""
    from policies.tasks.objects import load_object
    from policies.tasks.spec import TaskState

    pos = np.array([o[:3] for o in objects], float).reshape(1, -1, 3)
    quat = np.array([yaw_q(o[3]) if len(o) == 4 else o[3:] for o in objects], float).reshape(1, -1, 4)
    return TaskState(ee_pos=np.array([ee], float), ee_quat=np.array([[1.0, 0, 0, 0]]), object_pos=pos,
                     object_quat=quat, goal=np.array([goal], float), support_z=0.0,
                     objects=tuple(load_object(n) for n in names))


def test_objects_come_from_the_assets_mjcf():
    from policies.tasks.objects import load_object

    cube, bin_, zone = (load_object(n) for n in ("cube", "bin", "target_zone"))
    assert cube.sim.mass == pytest.approx(0.064) and cube.sim.friction == (0.8, 0.005, 0.0001)
    assert cube.half_xy == (0.02, 0.02) and cube.height == pytest.approx(0.04) and cube.sim.collide
    assert len(bin_.sim.parts) == 5 and bin_.sim.mass == pytest.approx(0.1661184)
    assert bin_.sim.friction[0] == 0.6 and bin_.height == pytest.approx(0.064)
    assert not zone.sim.collide and zone.sim.opacity == pytest.approx(0.6) and zone.half_xy == (0.05, 0.05)
    placed = cube.placed((1.0, 2.0, 0.75), 0.3)
    assert placed.pos == (1.0, 2.0, 0.75) and placed.yaw == 0.3 and cube.sim.pos != placed.pos
    with pytest.raises(InputError, match="unknown task object"):
        load_object("sphere")


def test_reach_success_within_two_centimetres():
    from policies.tasks import reach

    goal = (0.5, 0.0, 0.3)
    assert reach.success(state((0.5, 0.019, 0.3), goal=goal))[0]
    assert not reach.success(state((0.5, 0.021, 0.3), goal=goal))[0]
    near, far = (reach.reward(state((0.5, d, 0.3), goal=goal))[0] for d in (0.01, 0.1))
    assert 1.0 >= near > far > 0.0


def test_push_success_needs_the_cube_inside_the_zone_on_the_table():
    from policies.tasks import push

    names = ("cube", "target_zone")
    zone = (0.5, 0.2, 0.0, np.pi / 4)                    # a zone turned 45 degrees: its square is a diamond
    inside = state((0, 0, 0.3), [(0.5 + 0.06, 0.2, 0.0, 0.0), zone], names=names)
    assert push.success(inside)[0]                       # 6 cm along x is inside the diamond (0.07 m)
    corner = state((0, 0, 0.3), [(0.5 + 0.045, 0.2 + 0.045, 0.0, 0.0), zone], names=names)
    assert not push.success(corner)[0]                   # inside the axis-aligned square, outside the diamond
    lifted = state((0, 0, 0.3), [(0.5, 0.2, 0.05, 0.0), zone], names=names)
    assert not push.success(lifted)[0]
    closer = push.reward(state((0.3, 0.2, 0.02), [(0.45, 0.2, 0.0, 0.0), zone], names=names))[0]
    farther = push.reward(state((0.1, 0.2, 0.02), [(0.25, 0.2, 0.0, 0.0), zone], names=names))[0]
    assert closer > farther


def test_pick_place_success_needs_the_cube_in_the_upright_bin_and_released():
    from policies.tasks import pick_place

    names = ("cube", "bin")
    bin_ = (0.4, -0.2, 0.0, 0.3)
    in_bin = (0.41, -0.19, 0.004, 0.1)                   # resting on the bin's floor
    assert pick_place.success(state((0.41, -0.19, 0.2), [in_bin, bin_], names=names))[0]
    held = state((0.41, -0.19, 0.026), [in_bin, bin_], names=names)
    assert pick_place.in_bin(held)[0] and not pick_place.success(held)[0]      # the tool still at the cube
    outside = state((0.2, 0, 0.3), [(0.5, -0.2, 0.0, 0.0), bin_], names=names)
    assert not pick_place.success(outside)[0]            # beside the bin, on the table
    on_rim = state((0.2, 0, 0.3), [(0.4, -0.2 + 0.06, 0.064, 0.0), bin_], names=names)
    assert not pick_place.success(on_rim)[0]             # lying on the wall, not in the bin
    toppled_q = np.array([np.sin(np.pi / 4), 0.0, 0.0, np.cos(np.pi / 4)])      # bin on its side
    toppled = state((0.2, 0, 0.3), [in_bin, (0.4, -0.2, 0.0, *toppled_q)], names=names)
    assert not pick_place.success(toppled)[0]
    carrying = pick_place.reward(state((0.4, -0.19, 0.15), [(0.4, -0.19, 0.13, 0.0), bin_], names=names))[0]
    waiting = pick_place.reward(state((0.0, 0.0, 0.3), [(0.6, 0.2, 0.0, 0.0), bin_], names=names))[0]
    assert pick_place.reward(state((0.41, -0.19, 0.2), [in_bin, bin_], names=names))[0] > carrying > waiting


def test_registry_names_tasks_and_their_robots():
    from policies.tasks.registry import get_task, task_robot_pairs

    assert set(task_robot_pairs()) == {("reach", "franka"), ("reach", "so101"), ("reach", "g1_upper"),
                                       ("push", "franka"), ("pick_place", "franka"), ("pick_place", "so101")}
    assert get_task("reach", "g1").name == "reach"      # the humanoid runs as its fixed-pelvis upper body
    with pytest.raises(InputError, match="runs on franka, not 'so101'"):
        get_task("push", "so101")
    with pytest.raises(InputError, match="unknown task 'stack'"):
        get_task("stack")
