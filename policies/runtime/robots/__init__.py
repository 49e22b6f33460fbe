"""robots: the adapters that meet `policies.runtime.robot.RobotAdapter`, one module per robot, each importing its
robot's client library only when it connects. `motion` is the jerk-limited joint motion a fast link streams."""
from twin_kit import lazy_exports

_API = {
    **dict.fromkeys(["JointMotion", "MotionLimits"], "motion"),
    **dict.fromkeys(["FrankaAdapter", "FrankaError"], "franka"),
    "SimAdapter": "sim",  # sim: Twin's simulated robot doing a task in a scene
    "G1Adapter": "g1",   # g1: Unitree G1 over rt/lowcmd, rt/lowstate (DDS); other adapters add their line
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
