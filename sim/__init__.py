"""sim: Newton (Warp) physics and sensors in a reconstructed scene.

Stages: `physics/` (the world: scan, robot, objects, solvers, control, batched env) -> `sensors/` (cameras
that ray trace the robot into the scan and composite it over the splats; filming) -> `live/` (a physics
session paced to real time, its browser view, teleoperation); `bridges/` serves a simulated robot on the robot's own
network interface (a G1 over Unitree's DDS topics). `isaac/` runs inside Isaac Sim's own Python.
Public API below (loaded on first use): other packages, benches and examples import only these names.
"""
from twin_kit import lazy_exports

_API = {
    **dict.fromkeys(["WorldConfig", "World", "BoxObject", "build_world", "step", "body_poses", "frame_poses",
                     "resolve_solver", "SOLVERS"], "physics.world"),
    **dict.fromkeys(["ROBOTS", "get_robot", "model_path"], "physics.robots"),
    "penetrating": "physics.placement",
    "physical_pieces": "physics.mujoco_batch",
    **dict.fromkeys(["SceneMesh", "load_scene", "load_mesh_file"], "physics.scene_mesh"),
    **dict.fromkeys(["ee_pose", "jacobian", "ik_targets", "get_joint_targets", "set_joint_targets",
                     "get_joint_positions", "scripted_goal", "default_reach", "orientation_error"], "physics.control"),
    **dict.fromkeys(["SimEnv", "EnvConfig", "gym_vector_env"], "physics.env"),
    **dict.fromkeys(["Sensors", "SensorFrame", "control_maps", "scene_background"], "sensors.cameras"),
    **dict.fromkeys(["SplatBackground"], "sensors.splat_background"),
    **dict.fromkeys(["SimViewConfig", "run_view"], "live.cli"),
    **dict.fromkeys(["LinkMesh", "link_meshes", "add_bodies", "add_goal", "set_pose", "draw_bodies", "look_from",
                     "speed_text", "start_view", "serve_view", "stop_view"], "live.viewer"),
    **dict.fromkeys(["ThreadedSession", "RealTimePacer", "ticker", "SnapshotDrawer"], "live.threaded"),
    # bridges/: Unitree's low-level DDS messages, their CRC and the G1's motors; the DDS link; the G1 bridge
    **dict.fromkeys(["LowCmd_", "LowState_", "MotorCmd_", "MotorState_", "IMUState_", "LOWCMD_STRUCT",
                     "LOWSTATE_STRUCT", "TOPIC_LOWCMD", "TOPIC_LOWSTATE", "G1_JOINTS", "g1_motor", "g1_joint_name",
                     "to_struct", "from_struct", "struct_crc", "message_crc", "unitree_crc"], "bridges.unitree_hg"),
    **dict.fromkeys(["DdsLink", "check_interface"], "bridges.dds"),
    **dict.fromkeys(["UnitreeBridge", "run_bridge"], "bridges.unitree"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _API)
