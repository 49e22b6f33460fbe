"""Filming a simulated world: a camera that sees the robot, sensors that show the scene, and frames of poses.

Used by `twin sim` (the scripted motion) and `twin sim --teleop` (a recorded session filmed afterwards).
"""
from __future__ import annotations

import numpy as np

from spatial import Camera, look_at


def pick_camera(world, width: int):
    """A capture camera that sees the robot well (metres), else a 3/4 view; resized to `width`."""
    import numpy as np


    base = world.base_xform[:3]
    target = base + np.array([0.0, 0.0, 0.4])
    best = None
    if world.scene is not None and world.cfg.scene:
        from pathlib import Path

        from spatial import read_bundle

        root = Path(world.cfg.scene)
        if root.is_dir():
            S = np.eye(4)
            S[:3, :3] *= world.scene.metres_per_unit
            for c in read_bundle(root).cameras:
                cm = c.transformed(S)
                x = cm.R @ target + cm.t
                if x[2] <= 0.3:
                    continue
                u = np.array([cm.fx * x[0] / x[2] + cm.cx, cm.fy * x[1] / x[2] + cm.cy])
                off = np.linalg.norm(u / [cm.width, cm.height] - 0.5)
                dist = abs(x[2] - 1.6)
                score = off + 0.2 * dist
                if best is None or score < best[0]:
                    best = (score, cm)
    if best is not None and best[0] < 0.6:
        cam = best[1]
        s = width / cam.width
        return cam.scaled(s)
    R, t = look_at(base + np.array([1.4, 1.0, 1.0]), target)
    h = int(round(width * 0.75)) // 2 * 2
    f = 0.9 * width
    return Camera("sim", width, h, f, f, (width - 1) / 2, (h - 1) / 2, R, t)


def film_sensors(world, cam, splats: bool = True, worlds: list[int] | None = None):
    """Sensors for filming world 0 (or `worlds`) from `cam`: the scene through its splats when `splats` and
    the bundle has splats.ply, else (or when they cannot be loaded: warned) the ray-traced collision mesh."""
    from sim.sensors.cameras import Sensors
    from twin_kit import warn

    worlds = [0] if worlds is None else worlds
    if splats:
        try:
            return Sensors(world, cam, worlds=worlds, splats=None)
        except Exception as e:  # noqa: BLE001 - the video still works from the mesh alone
            warn(f"splat background unavailable ({type(e).__name__}: {e}); showing the collision mesh")
    return Sensors(world, cam, worlds=worlds, splats=False)


def film_poses(world, poses: list[np.ndarray], width: int, splats: bool = True) -> tuple[list[np.ndarray], bool]:
    """RGB uint8 frames of world 0 at each recorded set of body poses, through `twin sim`'s camera and scene
    compositing; also whether the scene came from its splats. Overwrites the world's body poses (call it
    after the physics thread has stopped)."""
    import warp as wp

    cam = pick_camera(world, width)
    sensors = film_sensors(world, cam, splats)
    bq = world.state.body_q.numpy()
    bpw = world.bodies_per_world
    frames = []
    for p in poses:
        bq[:bpw] = p
        wp.copy(world.state.body_q, wp.array(bq, dtype=wp.transform, device=world.device))
        rgb = sensors.render().rgb[0]
        frames.append((rgb.numpy() * 255 + 0.5).astype(np.uint8))
    return frames, sensors.splats is not None
