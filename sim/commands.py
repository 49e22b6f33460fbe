"""`twin sim`: put a robot in a scene, run a scripted end-effector motion, write an mp4 of a camera.

`twin view` (with `--sim`, sim.live.cli) is registered by policies, which adds `--dataset` on top.
"""
from __future__ import annotations

from dataclasses import dataclass

from sim.physics.world import SOLVERS
from twin_kit import InputError, Verb, opt, validate_config

WARP_DEVICE = dict(pattern=r"cpu|cuda(:\d+)?", pattern_help="cpu, cuda or cuda:N")


@dataclass
class SimConfig:
    """Simulate a robot in a scene bundle (or any mesh file) and film it."""

    scene: str = opt(help="scene bundle directory (with collision.*) or a GLB/OBJ/PLY/STL/USD mesh file",
                     positional=True)
    robot: str = opt("franka", "robot: franka, so100, so101, ur5e, g1, g1_hands, aloha")
    scale: float | None = opt(None, "metres per scene unit (required when the scene's scale is arbitrary)",
                              low=0, low_open=True)
    robot_pose: tuple[float, float, float, float] | None = opt(
        None, "robot base x y z yaw in metres / radians (default: a free spot on the support surface)",
        metavar="X")
    worlds: int = opt(1, "number of replicated worlds simulated together (world 0 is filmed)", low=1, high=65536)
    solver: str = opt("auto", "physics solver (auto: mujoco_cpu on the CPU unless the scan is a "
                      "detailed mesh, mujoco_warp on CUDA)",
                      choices=SOLVERS)
    device: str = opt("cpu", "Warp device (cpu or cuda:0)", **WARP_DEVICE)
    seconds: float = opt(4.0, "length of the scripted motion", low=0, low_open=True, high=3600)
    fps: float = opt(25.0, "video frame rate", low=1, high=240)
    width: int = opt(320, "video width in pixels (height follows the camera's aspect)", low=16, high=8192)
    out: str = opt("sim.mp4", "output mp4")
    image: str | None = opt(None, "also save a frame (a quarter in) as this PNG")
    splats: bool = opt(True, "show the scene through its Gaussian splats when the bundle has splats.ply")
    teleop: bool = opt(False, "drive the end effector from the browser viewer (prints its URL first) instead "
                              "of the scripted motion; the session is filmed to --out when it ends")
    teleop_seconds: float | None = opt(None, "with --teleop: stop and save after this many seconds "
                                             "(default: the 'Stop & save' button or Ctrl-C)", low=0, low_open=True)
    host: str = opt("127.0.0.1", "with --teleop: viewer address to bind")
    port: int = opt(8080, "with --teleop: viewer port (a port in use is an error)", low=1, high=65535)
    bridge: str | None = opt(None, "instead of the scripted motion, serve the simulated robot on its own network "
                                   "interface until Ctrl-C: unitree (a G1 on Unitree's low-level DDS topics "
                                   "rt/lowstate and rt/lowcmd, as unitree_mujoco does)", choices=("unitree",))
    interface: str = opt("lo", "with --bridge: network interface to serve on (lo: this machine only)")
    domain: int = opt(1, "with --bridge unitree: DDS domain id (unitree_mujoco uses 1; a real robot is on 0)",
                      low=0, high=232)
    band: bool = opt(True, "with --bridge and a free-floating robot (g1): hang its torso from an elastic band, as "
                           "unitree_mujoco does, so a controller that does not balance it does not make it fall")

    def __post_init__(self):
        validate_config(self)


def check_sim_outputs(cfg: SimConfig) -> None:
    """Refuse, before the (long) simulation, outputs that could not be written and an unknown robot."""
    from pathlib import Path

    from sim.physics.robots import get_robot
    from spatial import read_bundle
    from twin_kit import check_output_file

    scene = Path(cfg.scene)
    if not scene.exists():
        raise InputError(f"{scene}: no such scene bundle or mesh file")
    if scene.is_dir():
        read_bundle(scene)  # a damaged bundle is refused before Warp and Newton load
    get_robot(cfg.robot)
    check_output_file(cfg.out, (".mp4",), "--out")
    if cfg.image:
        check_output_file(cfg.image, (".png", ".jpg", ".jpeg"), "--image")
        if _same_file(cfg.image, cfg.out):
            raise InputError(f"--image {cfg.image}: is the same file as --out")


def _same_file(a: str, b: str) -> bool:
    from pathlib import Path

    return Path(a).resolve() == Path(b).resolve()


def run_sim(cfg: SimConfig, json_out: bool = False) -> int:
    from twin_kit import destination_lock

    if cfg.bridge:
        from sim.bridges.unitree import run_bridge

        return run_bridge(cfg, json_out)
    check_sim_outputs(cfg)
    with destination_lock(cfg.out):
        if cfg.teleop:
            from sim.live.teleop import run_teleop

            return run_teleop(cfg, json_out)
        return _run_scripted(cfg, json_out)


def _run_scripted(cfg: SimConfig, json_out: bool) -> int:
    import time
    from pathlib import Path

    import numpy as np

    from twin_kit import quiet_warp

    quiet_warp()  # keep stdout for the JSON result
    from scenes import write_video
    from sim.physics import control
    from sim.physics.world import WorldConfig, build_world, step
    from sim.sensors.filming import film_sensors, pick_camera
    from twin_kit import emit_json, info, progress

    t0 = time.perf_counter()
    world = build_world(WorldConfig(scene=cfg.scene, robot=cfg.robot, scale=cfg.scale, robot_pose=cfg.robot_pose,
                                    worlds=cfg.worlds, solver=cfg.solver, device=cfg.device))
    info(f"{cfg.robot} at ({', '.join(f'{v:.3f}' for v in world.base_xform[:3])}) on {cfg.scene}, "
         f"{cfg.worlds} world(s), solver {world.cfg.solver}, built in {time.perf_counter() - t0:.1f} s")
    cam = pick_camera(world, cfg.width)
    sensors = film_sensors(world, cam, cfg.splats)
    p0, r0 = control.ee_pose(world)
    steps_per_frame = max(1, int(round(1.0 / (cfg.fps * world.cfg.frame_dt))))
    n_frames = max(1, int(round(cfg.seconds * cfg.fps)))
    reach = control.default_reach(cfg.robot)
    frames, errors = [], []
    with progress(json_out) as bar:
        task = bar.add_task("sim", total=n_frames, status="")
        for k in range(n_frames):
            for j in range(steps_per_frame):
                goal = control.scripted_goal(p0, (k * steps_per_frame + j) * world.cfg.frame_dt, cfg.seconds, reach)
                control.ik_targets(world, goal, r0 if (world.robot.spec.arm_dofs or 0) >= 6 else None)
                step(world)
            errors.append(float(np.linalg.norm(control.ee_pose(world)[0][0] - goal[0])))
            rgb = sensors.render().rgb[0]  # robot composited into the splats (or the mesh) by depth
            frames.append((rgb.numpy() * 255 + 0.5).astype(np.uint8))
            bar.update(task, advance=1, status=f"ee err {errors[-1] * 1000:.1f} mm")
    out = Path(cfg.out)
    n = write_video(frames, out, fps=cfg.fps)
    if cfg.image:
        from PIL import Image

        from twin_kit import atomic_output

        with atomic_output(cfg.image) as tmp:
            Image.fromarray(frames[len(frames) // 4]).save(tmp)
    res = {"out": str(out), "frames": n, "fps": cfg.fps, "robot": cfg.robot, "worlds": cfg.worlds,
           "solver": world.cfg.solver, "base": world.base_xform[:3].tolist(), "splats": sensors.splats is not None,
           "ee_err_mm_median": 1000 * float(np.median(errors)), "seconds": time.perf_counter() - t0}
    info(f"wrote {out} ({n} frames); median end-effector tracking error {res['ee_err_mm_median']:.1f} mm")
    if json_out:
        emit_json(res)
    return 0


VERBS = [Verb("sim", SimConfig, run_sim, "simulate a robot in a scene (Newton physics) and film it to mp4")]
