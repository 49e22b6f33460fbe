"""sim: Newton (Warp) physics and sensors in a reconstructed scene.

Public API (import from the modules; this package imports nothing heavy):
  - sim.world: WorldConfig, BoxObject, build_world(cfg) -> World, step(world, frames), body_poses, frame_poses
  - sim.robots: ROBOTS, get_robot(name), model_path(spec), urdf_text(spec), mjcf_source(spec)
  - sim.scene_mesh: load_scene(source, scale) -> SceneMesh, load_mesh_file, estimate_support
  - sim.control: ee_pose, jacobian, ik_targets, get/set_joint_targets, get_joint_positions
  - sim.env: SimEnv (batched reset/step, torch observations), EnvConfig, gym_vector_env(env)
  - sim.sensors: Sensors(world, camera).render() -> SensorFrame, compose_with_splats, control_maps
  - sim.commands: the `twin sim` verb
"""
