"""sim: Newton (Warp) physics and sensors in a reconstructed scene.

Public API (import from the modules; this package imports nothing heavy):
  - sim.world: WorldConfig, BoxObject, build_world(cfg) -> World, step(world, frames), body_poses, frame_poses,
    resolve_solver(name, device) (auto: mujoco_cpu on the CPU, mujoco_warp on CUDA)
  - sim.mujoco_batch: solver mujoco_cpu (MuJoCo's C core, all worlds in one batch), scene_pieces, world_mjcf
  - sim.robots: ROBOTS, get_robot(name), model_path(spec), urdf_text(spec), mjcf_source(spec)
  - sim.scene_mesh: load_scene(source, scale) -> SceneMesh, load_mesh_file, estimate_support
  - sim.control: ee_pose, jacobian, ik_targets, get/set_joint_targets, get_joint_positions
  - sim.env: SimEnv (batched reset/step, torch observations), EnvConfig, gym_vector_env(env)
  - sim.sensors: Sensors(world, camera, mounted, normals, worlds, splats).render(out=None) -> SensorFrame
    (robot ray traced into the scene's splats by depth), compose_frame, compose_with_splats, control_maps
  - sim.splat_background: SplatBackground(splats.ply, metres_per_unit).render(viewmats, K, w, h), bundle_splats
  - sim.sensor_trace: Tracer (batched SensorCamera traces), static_scene_model, dynamic_crop
  - sim.live_view: start_sim_viewer(bundle, opts, robot, scale) -> (Viewer, LiveSim) (`twin view --sim`),
    LiveSim (physics thread; nudge, set_gripper, reset, set_playing, set_mode), link_meshes(world)
  - sim.teleop: run_teleop (`twin sim --teleop`), film_poses(world, poses, width)
  - sim.commands: the `twin sim` verb
"""
