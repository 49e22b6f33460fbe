"""policies.tasks.TaskEnv with its experts, on real physics (MuJoCo's C core through sim): seeded episodes
succeed in a small desk bundle; resets are reproducible; the task objects keep their friction through the
Newton -> MuJoCo conversion and are segmented as objects; a bundle of arbitrary scale needs --scale."""
from __future__ import annotations

import numpy as np
import pytest
from support.task_scene import TABLE_Z, desk_bundle

from twin_kit import InputError


@pytest.fixture(scope="module")
def desk(tmp_path_factory):
    return desk_bundle(tmp_path_factory.mktemp("task") / "desk")


def run_episodes(env, seeds) -> np.ndarray:
    """Reset every world from its seed and let the expert act until all episodes are done."""
    from policies.experts.registry import make_expert

    expert = make_expert(env)
    env.reset(seeds)
    expert.reset()
    done = np.zeros(env.n, bool)
    while not done.all():
        _, _, d, info = env.step(expert.act())
        done = d.numpy()
    return info["success"].numpy()


def test_a_bundle_of_arbitrary_scale_needs_scale(tmp_path):
    from policies.tasks.env import TaskEnv
    from policies.tasks.spec import TaskConfig

    arb = desk_bundle(tmp_path / "arb", metric=False)
    with pytest.raises(InputError, match="scale is arbitrary; pass --scale"):
        TaskEnv(TaskConfig(task="reach", bundle=str(arb), worlds=1))


@pytest.fixture(scope="module")
def pick_env(desk):
    from policies.tasks.env import TaskEnv
    from policies.tasks.spec import TaskConfig

    return TaskEnv(TaskConfig(task="pick_place", robot="franka", bundle=str(desk), worlds=4, seed=0))


def test_franka_pick_place_succeeds_on_seeded_episodes(pick_env):
    env = pick_env
    assert env.base[2] == pytest.approx(TABLE_Z) and env.world.cfg.solver == "mujoco_cpu"
    ok = run_episodes(env, [0, 1, 2, 3])
    assert ok.all(), ok
    s = env.state()
    from policies.tasks.pick_place import in_bin

    assert in_bin(s).all() and (env.steps < env.max_steps).all()
    obs = env.observe()
    assert obs["observation.state"].shape == (4, 9) and obs["object_pos"].shape == (4, 2, 3)


def test_resets_are_reproducible_per_seed_and_start_at_rest(pick_env):
    env = pick_env
    env.reset([5, 6, 5, 7])
    a = env.state().object_pos.copy()
    assert np.allclose(a[0], a[2]) and not np.allclose(a[0], a[1])
    env.reset([7, 5, 6, 5])                       # the same seeds in other worlds: the same layouts
    b = env.state().object_pos
    assert np.allclose(b[0], a[3]) and np.allclose(b[1], a[0]) and np.allclose(b[2], a[1])
    hold = env.world.home_targets.reshape(env.n, -1)[:, :env.action_dim]
    for _ in range(25):                           # half a second with the arm held at home: nothing moves
        env.step(hold)
    assert np.abs(env.state().object_pos - b).max() < 0.003


def test_objects_keep_friction_in_mujoco_and_grasping_options(pick_env):
    import mujoco

    m = pick_env.world.solver.mj_model
    geoms = {m.geom(g).name: g for g in range(m.ngeom)}
    cube = [g for n, g in geoms.items() if n.startswith("object/cube/")]
    bin_ = [g for n, g in geoms.items() if n.startswith("object/bin/")]
    assert len(cube) == 1 and len(bin_) == 5
    assert np.allclose(m.geom_friction[cube[0]], [0.8, 0.005, 0.0001]) and m.geom_condim[cube[0]] == 4
    assert np.allclose(m.geom_friction[bin_][:, 0], 0.6)
    assert m.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC and m.opt.impratio == 10 and m.opt.noslip_iterations > 0
    masses = [m.body_subtreemass[m.geom_bodyid[g[0]]] for g in (cube, bin_)]
    assert masses == pytest.approx([0.064, 0.1661184], rel=1e-4)


def test_push_zone_is_visual_only_and_objects_are_segmented(desk):
    from policies.tasks.env import TaskEnv
    from policies.tasks.spec import TaskConfig
    from sim import Sensors
    from sim.sensors.cameras import SEG_OBJECT
    from spatial.cameras import Camera, look_at

    env = TaskEnv(TaskConfig(task="push", robot="franka", bundle=str(desk), worlds=2, seed=0))
    m = env.world.solver.mj_model
    zone_body = [b for b in range(m.nbody) if "target_zone" in m.body(b).name]
    assert zone_body and not any(m.geom_bodyid[g] == zone_body[0] and m.geom_contype[g] for g in range(m.ngeom))
    ok = run_episodes(env, [0, 1])
    assert ok.all(), ok
    env.reset([3, 4])
    for target in env.state().object_pos[0]:      # the cube, then the zone, each straight below a camera
        R, t = look_at(np.array([*target[:2], target[2] + 0.6]) + [0.01, 0.0, 0.0], target)
        cam = Camera("top", 64, 64, 80.0, 80.0, 31.5, 31.5, R, t)
        seg = Sensors(env.world, cam, worlds=[0]).render().seg[0]
        seg = seg[..., 0] if seg.ndim == 3 else seg
        assert bool((seg[30:34, 30:34] == SEG_OBJECT).all()) and int((seg == SEG_OBJECT).sum()) >= 16


def test_so101_picks_and_places_with_its_small_gripper(desk):
    from policies.tasks.env import TaskEnv
    from policies.tasks.spec import TaskConfig

    env = TaskEnv(TaskConfig(task="pick_place", robot="so101", bundle=str(desk), worlds=2, seed=0))
    assert env.action_dim == 6
    ok = run_episodes(env, [0, 1])
    assert ok.all(), ok


def test_g1_reaches_with_one_arm_on_a_fixed_pelvis(desk):
    from policies.tasks.env import TaskEnv
    from policies.tasks.spec import TaskConfig

    env = TaskEnv(TaskConfig(task="reach", robot="g1", bundle=str(desk), worlds=3, seed=0))
    spec = env.world.robot.spec
    assert spec.name == "g1_upper" and not spec.floating and env.action_dim == 7   # the right arm only
    pelvis_z = env.world.base_xform[2]
    ok = run_episodes(env, [0, 1, 2])
    assert ok.all(), ok
    assert env.world.base_xform[2] == pelvis_z == pytest.approx(TABLE_Z + spec.base_height)
    # the reach goal is a point in the air no camera sees: it travels in observation.state, in the base frame
    obs = env.observe()["observation.state"].numpy()
    assert env.state_names()[-3:] == ["goal_x", "goal_y", "goal_z"] and obs.shape == (3, 7 + 3)
    yaw = env.base[3]
    c, s = np.cos(yaw), np.sin(yaw)
    back = env.base[:3] + np.stack([c * obs[:, 7] - s * obs[:, 8], s * obs[:, 7] + c * obs[:, 8], obs[:, 9]], 1)
    np.testing.assert_allclose(back, env.goal, atol=1e-5)
    lo, hi = np.array(env.profile.reach_box).T
    assert ((obs[:, 7:] > lo - 0.35) & (obs[:, 7:] < hi + 0.35)).all()  # near the box (base height aside)
