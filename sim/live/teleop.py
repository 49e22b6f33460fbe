"""`twin sim --teleop`: drive the end effector from the browser viewer, then film the session to mp4.

The session (`sim.live.session`, drawn by `sim.live.viewer`) runs in teleop mode, keeping world 0's body poses
at the video frame rate; when
it ends (Stop & save, Ctrl-C or `--teleop-seconds`) those poses are replayed through the same camera and
splat compositing as the scripted `twin sim` run.
"""
from __future__ import annotations

import time
from pathlib import Path

from sim.sensors.filming import film_poses
from twin_kit import InputError


def run_teleop(cfg, json_out: bool = False) -> int:
    """Serve the viewer with the robot in teleop mode; on exit write `cfg.out` from the recorded session."""
    from scenes import ViewerOptions, write_video
    from sim.live.session import SessionConfig
    from sim.live.viewer import ViewConfig, start_sim_viewer, stop_sim_viewer
    from twin_kit import emit_json, info, warn

    if not Path(cfg.scene).is_dir():
        raise InputError(f"{cfg.scene}: --teleop needs a scene bundle directory (the viewer shows bundles)")
    if cfg.worlds != 1:
        raise InputError("--teleop drives one world; drop --worlds")
    from spatial import read_bundle

    read_bundle(cfg.scene)  # a damaged bundle is refused before the viewer starts
    t0 = time.perf_counter()
    v, view = start_sim_viewer(cfg.scene, ViewerOptions(host=cfg.host, port=cfg.port), robot=cfg.robot,
                               scale=cfg.scale, robot_pose=cfg.robot_pose,
                               cfg=SessionConfig(teleop=True, record_fps=cfg.fps), view=ViewConfig(save_button=True),
                               solver=cfg.solver, device=cfg.device)
    live = view.session
    info(f"teleop: {v.url} — buttons or keys I/K J/L U/O move the end effector; 'Stop & save' or Ctrl-C ends "
         f"and writes {cfg.out}")
    start_pos = live.snapshot.ee_pos.copy()
    try:
        deadline = None if cfg.teleop_seconds is None else time.monotonic() + cfg.teleop_seconds
        while not live.finished.is_set() and (deadline is None or time.monotonic() < deadline):
            live.finished.wait(0.2)
    except KeyboardInterrupt:
        info("interrupted: saving the session")
    finally:
        stop_sim_viewer(v, view)  # viser's goodbye line on stderr: it must not precede the JSON
    if live.error is not None:
        raise live.error
    snap = live.snapshot
    poses = live.recording or [snap.body_q]
    if len(live.recording) >= live.cfg.max_record_frames:
        warn(f"recording kept the first {len(poses)} frames only")
    world = live.world
    frames, used_splats = film_poses(world, poses, cfg.width, cfg.splats)
    out = Path(cfg.out)
    n = write_video(frames, out, fps=cfg.fps)
    if cfg.image:
        from PIL import Image

        from twin_kit import atomic_output

        with atomic_output(cfg.image) as tmp:
            Image.fromarray(frames[len(frames) // 2]).save(tmp)
    moved = snap.ee_pos - start_pos
    res = {"out": str(out), "frames": n, "fps": cfg.fps, "robot": cfg.robot, "teleop": True,
           "sim_time": snap.sim_time, "speed": snap.speed, "ee_start": start_pos.tolist(),
           "ee_end": snap.ee_pos.tolist(), "ee_moved": moved.tolist(), "splats": used_splats,
           "base": world.base_xform[:3].tolist(), "seconds": time.perf_counter() - t0}
    info(f"wrote {out} ({n} frames, {snap.sim_time:.1f} s simulated); end effector moved "
         f"({moved[0]:+.3f}, {moved[1]:+.3f}, {moved[2]:+.3f}) m")
    if json_out:
        emit_json(res)
    return 0
