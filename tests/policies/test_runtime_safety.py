"""The runtime's safety layer with the Franka's and the G1's real limits (read from the URDFs the simulator loads,
checked against MuJoCo's own compile of the same files): each kind of intervention triggered and logged, NaN/inf
rejected, the real G1 teleoperation episode passing untouched."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest

from policies import read_dataset
from policies.runtime.safety import (
    KINDS,
    SafetyConfig,
    SafetyFilter,
    limit_margin,
    mjcf_limits,
    robot_limits,
    urdf_limits,
)
from sim import get_robot, model_path
from twin_kit import InputError

FRANKA_HOME = np.array(get_robot("franka").default_q)


def mujoco_model(robot: str) -> mujoco.MjModel:
    """MuJoCo's compile of the robot's URDF (geometry dropped, fixed links kept so the tool frame exists)."""
    root = ET.fromstring(model_path(get_robot(robot)).read_text())
    for link in root.findall("link"):
        for tag in ("visual", "collision"):
            for e in link.findall(tag):
                link.remove(e)
    ET.SubElement(ET.SubElement(root, "mujoco"), "compiler", fusestatic="false", discardvisual="true")
    return mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))


def franka_fk():
    """Tool centre point position of the Franka at joint positions q (9,), by MuJoCo's forward kinematics."""
    model = mujoco_model("franka")
    data = mujoco.MjData(model)
    tcp = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, get_robot("franka").ee_link)

    def fk(q):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        return data.xpos[tcp].copy()

    return fk


@pytest.fixture(scope="module")
def franka():
    return robot_limits("franka")


@pytest.fixture(scope="module")
def g1():
    return robot_limits("g1")


def kinds(events) -> list[str]:
    return [e.kind for e in events]


@pytest.mark.parametrize("robot", ["franka", "g1"])
def test_limits_are_the_robot_models_own(robot):
    limits = robot_limits(robot)
    model = mujoco_model(robot)
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(model.njnt)]
    assert list(limits.names) == names  # the sim's joint order (Newton imports a URDF's joints in file order)
    assert np.array_equal(limits.lower, model.jnt_range[:, 0]) and np.array_equal(limits.upper, model.jnt_range[:, 1])
    assert np.array_equal(limits.effort, model.jnt_actfrcrange[:, 1])
    assert np.isfinite(limits.velocity).all() and (limits.velocity > 0).all()
    # MuJoCo's MJCF of the same robot, read back through the MJCF path, gives the same ranges and efforts
    back = mjcf_limits(_saved_mjcf(model))  # (MuJoCo saves 6 significant digits)
    assert back.names == limits.names and np.allclose(back.lower, limits.lower, atol=1e-5)
    assert np.allclose(back.upper, limits.upper, atol=1e-5) and np.array_equal(back.effort, limits.effort)
    assert np.isinf(back.velocity).all() and np.isinf(back.acceleration).all()


def _saved_mjcf(model) -> str:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "robot.xml"
        mujoco.mj_saveLastXML(str(path), model)
        return path.read_text()


def test_franka_and_g1_limits_in_detail(franka, g1):
    assert franka.dof == 9 and franka.names[0] == "panda_joint1" and franka.names[-1] == "panda_finger_joint2"
    assert franka.upper[3] == -0.0698 and franka.velocity[4] == 2.61 and franka.effort[6] == 12.0
    # the URDF has no acceleration limit: the maker's published ones (assets/robots/joint_limits.json)
    assert franka.acceleration[:7].tolist() == [15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0]
    assert np.isinf(franka.acceleration[7:]).all() and "joint_limits.json" in franka.source
    assert g1.dof == 29 and g1.names[15] == "left_shoulder_pitch_joint" and np.isinf(g1.acceleration).all()
    arm = robot_limits("g1_upper")  # locked joints are left out, as the sim makes them fixed
    assert arm.names == tuple(g1.names[22:]) and np.array_equal(arm.upper, g1.upper[22:])
    sub = g1.select(["right_elbow_joint", "left_elbow_joint"])
    assert sub.names == ("right_elbow_joint", "left_elbow_joint") and sub.upper.tolist() == [2.0944, 2.0944]
    with pytest.raises(InputError, match="not in"):
        g1.select(["tail_joint"])
    wheel = urdf_limits('<robot name="r"><joint name="w" type="continuous"><limit effort="3" velocity="0"/>'
                        '</joint><joint name="f" type="fixed"/></robot>')
    assert wheel.names == ("w",) and np.isinf([wheel.lower[0], wheel.upper[0], wheel.velocity[0]]).all()


def test_nan_and_inf_are_rejected_and_the_last_safe_target_held(franka):
    f = SafetyFilter(franka)
    first, events = f.filter(FRANKA_HOME - 0.001, FRANKA_HOME, 0.02)  # (the open fingers sit at their limit)
    assert events == []
    for bad in (np.nan, np.inf, -np.inf):
        target = FRANKA_HOME.copy()
        target[2] = bad
        held, events = f.filter(target, FRANKA_HOME, 0.02)
        assert np.array_equal(held, first) and kinds(events) == ["nonfinite"]
        assert events[0].joint == 2 and events[0].name == "panda_joint3" and events[0].applied == first[2]
        assert np.isnan(events[0].requested) or np.isinf(events[0].requested)
    state = FRANKA_HOME.copy()
    state[5] = np.nan  # a garbled measurement holds too
    held, events = f.filter(FRANKA_HOME, state, 0.02)
    assert np.array_equal(held, first) and [(e.kind, e.joint) for e in events] == [("nonfinite", 5)]
    with pytest.raises(InputError, match="nothing safe to hold"):
        SafetyFilter(franka).filter(FRANKA_HOME, state, 0.02)
    with pytest.raises(InputError, match="9 joints"):
        f.filter(FRANKA_HOME[:7], FRANKA_HOME, 0.02)


@pytest.mark.parametrize("robot", ["franka", "g1"])
def test_a_target_past_a_joint_limit_is_clamped(robot):
    limits = robot_limits(robot)
    f = SafetyFilter(limits, SafetyConfig(max_relative_target=None))
    j = 3  # franka: panda_joint4 (upper -0.0698); g1: left_knee_joint (upper 2.8798)
    q = np.clip(np.zeros(limits.dof), limits.lower, limits.upper)
    q[j] = limits.upper[j]  # resting at the limit (short of it, the braking speed is what stops the joint)
    target = q.copy()
    target[j] = limits.upper[j] + 0.5
    safe, events = f.filter(target, q, 0.02)
    assert safe[j] == limits.upper[j] and kinds(events) == ["position_limit"]
    assert (events[0].requested, events[0].applied) == (target[j], limits.upper[j])
    low = q.copy()
    low[j] = -np.inf  # -inf is not finite: rejected, not clamped
    assert kinds(f.filter(low, q, 0.02)[1]) == ["nonfinite"]
    margin = SafetyFilter(limits, SafetyConfig(max_relative_target=None, position_margin=0.05))
    safe, _ = margin.filter(target, q, 0.02)
    assert safe[j] <= limits.upper[j] - 0.05 + 1e-12
    if robot == "franka":  # a margin wider than a quarter of a range (the 4 cm fingers) keeps half the range
        assert margin.upper[7] - margin.lower[7] == pytest.approx(0.02)


def test_max_relative_target_is_on_by_default_and_honoured(g1):
    assert SafetyConfig().max_relative_target == 0.2
    f = SafetyFilter(g1)
    rng = np.random.default_rng(0)
    q = np.clip(np.zeros(g1.dof), g1.lower, g1.upper)
    seen = 0
    for _ in range(50):  # a policy asking for wild targets; the robot follows what it is sent
        target = q + rng.normal(0.0, 0.5, g1.dof)
        safe, events = f.filter(target, q, 0.02)
        assert np.abs(safe - q).max() <= 0.2 + 1e-12
        seen += kinds(events).count("max_relative_target")
        q = safe
    assert seen > 100


def test_velocity_limit(g1):
    f = SafetyFilter(g1)
    q = np.clip(np.zeros(g1.dof), g1.lower, g1.upper)
    j = 1  # left_hip_roll_joint: 20 rad/s
    target = q.copy()
    target[j] += 0.15  # 30 rad/s over 5 ms
    safe, events = f.filter(target, q, 0.005)
    assert kinds(events) == ["velocity_limit"] and safe[j] == pytest.approx(q[j] + 20.0 * 0.005)
    assert events[0].name == "left_hip_roll_joint" and events[0].requested == target[j]


def test_acceleration_limit_from_rest(franka):
    f = SafetyFilter(franka)
    target = FRANKA_HOME.copy()
    target[1] += 0.03  # 3 rad/s in 10 ms from rest: over the 2.175 rad/s limit and the 7.5 rad/s^2 limit
    safe, events = f.filter(target, FRANKA_HOME, 0.01)
    assert kinds(events) == ["velocity_limit", "acceleration_limit"]
    assert safe[1] == pytest.approx(FRANKA_HOME[1] + 7.5 * 0.01 * 0.01)
    assert events[1].requested == pytest.approx(FRANKA_HOME[1] + 2.175 * 0.01)
    # a joint with no published acceleration limit (the G1's) gets SafetyConfig.max_acceleration, if set
    g1f = SafetyFilter(robot_limits("g1"), SafetyConfig(max_acceleration=50.0))
    assert g1f.amax.max() == 50.0


def test_running_into_a_limit_brakes_within_the_limits(franka):
    """Targets far past joint 1's upper limit every step: the filtered motion speeds up, brakes and stops at the
    limit, never over the velocity and acceleration limits, never past the limit."""
    f = SafetyFilter(franka, SafetyConfig(max_relative_target=None))
    dt, j = 0.01, 0
    q = FRANKA_HOME.copy()
    path = [q]
    for _ in range(400):
        target = path[-1].copy()
        target[j] = 10.0
        path.append(f.filter(target, path[-1], dt)[0])
    x = np.stack(path)[:, j]
    v = np.diff(x) / dt
    a = np.diff(v) / dt
    assert x.max() <= franka.upper[j] and x[-1] == pytest.approx(franka.upper[j], abs=1e-3)
    assert np.abs(v).max() <= franka.velocity[j] + 1e-9 and np.abs(v).max() > 0.9 * franka.velocity[j]
    assert np.abs(a).max() <= franka.acceleration[j] * (1 + 1e-6) + 1e-6
    assert abs(v[-1]) < 1e-6
    assert set(kinds(f.events)) <= {"position_limit", "velocity_limit", "acceleration_limit"}


def test_torque_limit_with_drive_gains(franka):
    f = SafetyFilter(franka, SafetyConfig(gains=(600.0, 60.0)))
    target = FRANKA_HOME.copy()
    target[1] += 0.18   # 600 * 0.18 = 108 N m > 87
    target[5] += 0.05   # 30 N m > 12
    safe, events = f.filter(target, FRANKA_HOME, 0.2)
    assert kinds(events) == ["torque_limit", "torque_limit"] and [e.joint for e in events] == [1, 5]
    assert safe[1] - FRANKA_HOME[1] == pytest.approx(87.0 / 600.0)
    assert safe[5] - FRANKA_HOME[5] == pytest.approx(12.0 / 600.0)


def test_workspace_box_scales_the_step_back(franka):
    fk = franka_fk()
    home = fk(FRANKA_HOME)
    box = (tuple(home - [0.3, 0.3, 0.3]), tuple(home + [0.3, 0.3, 0.02]))  # 2 cm of headroom above the tool
    f = SafetyFilter(franka, SafetyConfig(max_relative_target=None, workspace=box), fk=fk)
    target = FRANKA_HOME.copy()
    target[3] += 0.3  # unfold the elbow: the tool rises past the box's top
    assert fk(target)[2] > box[1][2]
    safe, events = f.filter(target, FRANKA_HOME, 1.0)
    assert kinds(events) == ["workspace"] and events[0].name == "end_effector" and events[0].joint == -1
    assert events[0].requested > 0 and events[0].applied == 0.0
    s = (safe - FRANKA_HOME)[3] / 0.3
    assert np.allclose(safe, FRANKA_HOME + s * (target - FRANKA_HOME)) and 0 < s < 1  # back along the step
    assert box[1][2] - 1e-3 < fk(safe)[2] <= box[1][2]                            # as far as the box allows
    # started outside (a tighter box): a step further out is held, a step back in is let through
    tight = SafetyFilter(franka, SafetyConfig(max_relative_target=None, workspace=(box[0], tuple(home - 0.01))),
                         fk=fk)
    held, events = tight.filter(target, FRANKA_HOME, 1.0)
    assert np.array_equal(held, FRANKA_HOME) and kinds(events) == ["workspace"]
    back = FRANKA_HOME.copy()
    back[3] -= 0.1
    assert np.array_equal(tight.filter(back, FRANKA_HOME, 1.0)[0], back)
    with pytest.raises(InputError, match="forward-kinematics"):
        SafetyFilter(franka, SafetyConfig(workspace=box))


def test_events_are_stamped_and_counted(franka):
    f = SafetyFilter(franka)
    f.filter(FRANKA_HOME, FRANKA_HOME, 0.02)
    target = FRANKA_HOME.copy()
    target[0] = np.nan
    _, events = f.filter(target, FRANKA_HOME, 0.02)
    e = events[0].as_dict()
    assert e == {"time": pytest.approx(0.04), "step": 2, "kind": "nonfinite", "joint": 0, "name": "panda_joint1",
                 "requested": pytest.approx(np.nan, nan_ok=True), "applied": FRANKA_HOME[0]}
    assert f.counts() == {**dict.fromkeys(KINDS, 0), "nonfinite": 1}
    _, events = f.filter(target, FRANKA_HOME, 0.02, now=12.5)
    assert events[0].time == 12.5 and len(f.events) == 2
    f.reset()
    assert f.last is None and f.step == 0


def test_limit_margin(franka):
    assert limit_margin(FRANKA_HOME, franka) == 0.0  # the fingers, fully open, sit at their upper limit
    arm = FRANKA_HOME.copy()
    arm[7:] = 0.02
    assert limit_margin(arm, franka) == pytest.approx(min(0.02, -0.0698 - -2.356, 3.7525 - 1.571, 2.8973 - 0.785))
    arm[3] = -0.05
    assert limit_margin(np.stack([FRANKA_HOME, arm]), franka) == pytest.approx(-0.0698 - -0.05)  # past: negative


def _g1_joint(name: str) -> str:
    """The dataset's Unitree name (kLeftShoulderPitch) as Twin's G1 model names it (left_shoulder_pitch_joint)."""
    return "_".join(w.lower() for w in re.findall(r"[A-Z][a-z]*", name)) + "_joint"


def test_the_real_g1_episode_passes_untouched(shared_data, g1):
    """The teleoperated G1 episode's 14 arm joints (30 fps) through the filter: well inside the limits, and
    no intervention with the default settings."""
    view = read_dataset(shared_data / "g1_episode")
    frames = view.episode_frames(2)
    every = list(np.ravel(view.spec.features["action"].names))
    names = [n for n in every if not n.startswith(("kLeftHand", "kRightHand"))]
    cols = [every.index(n) for n in names]
    arm = g1.select([_g1_joint(n) for n in names])
    assert arm.names[0] == "left_shoulder_pitch_joint" and arm.names[-1] == "right_wrist_yaw_joint"
    state, action = frames["observation.state"][:, cols], frames["action"][:, cols]
    f = SafetyFilter(arm)
    for q, a in zip(state, action, strict=True):
        safe, _ = f.filter(a, q, 1 / 30)
        assert np.array_equal(safe, a.astype(np.float64))
    assert f.events == []
    assert 0.05 < limit_margin(action, arm) < 1.0
