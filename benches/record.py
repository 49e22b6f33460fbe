"""Benchmark: frames/s recorded by `twin record` (expert rollout in parallel worlds, two cameras rendered from
the scan's splats and ray-traced robot, procedural restyle, video encode, dataset written) against MuJoCo's own
renderer stepping and rendering the same MJCF, cameras and image size in the same run.

    MUJOCO_GL=egl python benches/record.py --json [--scene twins/demo] [--worlds 16] [--size 128] [--frames 20]

Twin: `policies.Recorder` over --worlds worlds, one episode per world of --frames frames at --fps (the expert
acting at the task's control rate), cameras front + the robot's mounted one at --size², `--restyle` procedural,
each episode written by `DatasetWriter` (SVT-AV1 video, parquet, stats). Timed from the first reset to the last
episode on disk; world and sensor construction are not timed (`twin_build_s`). As in `twin record`, the worlds
and cameras run in a background thread while the main thread restyles and writes finished episodes. Stage shares
of the timed span (`twin_share_*`: rendering per camera, restyling, writing; physics and the expert are the
rest of the background thread's time) come from the same run; the two threads overlap.
Peer: the MJCF the mujoco_cpu worlds run (Newton's conversion: robot, objects, the scan as convex pieces, with
the collision geometry MuJoCo draws), the same two cameras added to it (fixed, and on the mounted camera's
body), `mujoco.Renderer` at the same size; each world's MjData starts where Twin's world ended and replays
its recorded actions, stepping the same physics steps per frame and rendering both cameras every frame.
`ratio` = twin_frames_per_s / peer_frames_per_s. Needs an OpenGL context: MUJOCO_GL=egl (Mesa's llvmpipe
without a GPU) or osmesa. `host`: the machine measured on (twin_kit.machine). The last stdout line is one JSON
object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

# benches/sim.py is named like the `sim` package: keep this folder off the import path when run as a script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("MUJOCO_GL", "egl")

from policies import DatasetWriter, RecordConfig, Recorder  # noqa: E402
from twin_kit import Prefetch, machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def timed(obj, name: str, acc: dict, key: str) -> None:
    """Wrap obj.name so that its wall time adds up in acc[key]."""
    fn = getattr(obj, name)

    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc[key] = acc.get(key, 0.0) + time.perf_counter() - t

    setattr(obj, name, wrapper)


def twin_run(cfg: RecordConfig, out: Path) -> tuple[dict, Recorder, dict]:
    t0 = time.perf_counter()
    rec = Recorder(cfg, cfg.worlds, defer_restyle=True)
    build = time.perf_counter() - t0
    acc: dict[str, float] = {}
    for cam in rec.cameras:
        timed(cam.sensors, "render", acc, f"render_{cam.name}")
    timed(rec.restyler, "apply", acc, "restyle")
    actions, frames = {}, 0
    t1 = time.perf_counter()
    # as `twin record` runs: worlds, cameras and restyling in a background thread, writing in this one
    with DatasetWriter(out, rec.layout.spec) as w, Prefetch(rec.run(range(cfg.episodes)), depth=2) as episodes:
        timed(w, "add_episode", acc, "write")
        for ep in episodes:
            ep.realise()
            w.add_episode(ep.frames, ep.videos, rec.layout.instruction, ep.meta())
            actions[ep.number] = ep.frames["action"]
            frames += ep.length
    el = time.perf_counter() - t1
    res = {"twin_frames_per_s": frames / el, "twin_frames": frames, "twin_seconds": el, "twin_build_s": build,
           **{f"twin_share_{k}": v / el for k, v in acc.items()}}
    return res, rec, actions


def _wxyz(q: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in (q[3], q[0], q[1], q[2]))


def peer_model(rec: Recorder):
    """The mujoco_cpu worlds' MJCF with Twin's two cameras added."""
    import mujoco

    world = rec.env.world
    root = ET.fromstring(world.solver.mjcf)
    link = world.robot.body_names[world.robot.camera_body] if world.robot.camera_body >= 0 else None
    for cam in rec.cameras:
        fovy = float(np.degrees(2 * np.arctan(0.5 * cam.camera.height / cam.camera.fy)))
        if cam.mounted:
            body = next(b for b in root.iter("body") if b.get("name", "").endswith(link))
            pose = cam.body_pose
        else:
            body, pose = root.find("worldbody"), cam.pose_gl()
        ET.SubElement(body, "camera", name=cam.name, pos=" ".join(map(repr, pose[:3].tolist())), quat=_wxyz(pose[3:]),
                      fovy=repr(fovy))
    return mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"))


def peer_run(rec: Recorder, actions: dict, cfg: RecordConfig, save: Path | None = None) -> dict:
    import mujoco

    from policies import joint_names

    m = peer_model(rec)
    world = rec.env.world
    names = joint_names(world)
    col = []
    for a in range(m.nu):
        j = m.joint(int(m.actuator_trnid[a, 0])).name
        col.append(next((i for i, n in enumerate(names) if j.endswith(n)), -1))
    qpos = world.solver.view["qpos"]
    datas = []
    for i in range(world.n):
        d = mujoco.MjData(m)
        d.qpos[:] = qpos[i]
        mujoco.mj_forward(m, d)
        datas.append(d)
    steps = rec.k * world.cfg.substeps
    r = mujoco.Renderer(m, cfg.size, cfg.size)
    cams = [c.name for c in rec.cameras]
    r.update_scene(datas[0], camera=cams[0])
    r.render()                                                           # first use (GL state) untimed
    frames = min(len(a) for a in actions.values())
    t0 = time.perf_counter()
    for f in range(frames):
        for i, d in enumerate(datas):
            act = actions[i][f]
            for a, c in enumerate(col):
                if c >= 0:
                    d.ctrl[a] = act[c]
            mujoco.mj_step(m, d, nstep=steps)
            for c in cams:
                r.update_scene(d, camera=c)
                img = r.render()
                if save is not None and i == 0 and f == frames - 1:
                    from PIL import Image

                    Image.fromarray(img).save(save / f"peer_{c}.png")
    el = time.perf_counter() - t0
    r.close()
    return {"peer_frames_per_s": frames * world.n / el, "peer_frames": frames * world.n, "peer_seconds": el,
            "peer_ngeom": int(m.ngeom), "peer_gl": os.environ.get("MUJOCO_GL")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", default=str(REPO / "twins" / "demo"), help="scene bundle (default: twins/demo, "
                    "the synthetic scene `twin demo` builds)")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--robot-pose", type=float, nargs=4, default=None, metavar="X",
                    help="robot base x y z yaw (default: a free spot the task chooses)")
    ap.add_argument("--task", default="pick_place")
    ap.add_argument("--robot", default="franka")
    ap.add_argument("--worlds", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=20, help="recorded frames per world (one episode each)")
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--restyle", default="procedural", choices=("none", "procedural"))
    ap.add_argument("--no-splats", action="store_true", help="allow a scene without splats (mesh appearance)")
    ap.add_argument("--save-frames", default=None, help="write the last frame of world 0 from both engines here")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if not Path(a.scene).exists():
        sys.exit(f"{a.scene}: no such scene (build the synthetic scene with `twin demo`, or pass --scene)")
    from spatial import BundlePaths

    if not BundlePaths(Path(a.scene)).splats.is_file() and not a.no_splats:
        sys.exit(f"{a.scene}: has no splats; train them (`twin splat {a.scene}`) or pass --no-splats to measure the "
                 "ray-traced scan mesh instead")
    from twin_kit import quiet_warp

    quiet_warp()
    with tempfile.TemporaryDirectory(prefix="twin-bench-record-") as tmp:
        pose = tuple(a.robot_pose) if a.robot_pose else None
        cfg = RecordConfig(bundle=a.scene, out=str(Path(tmp) / "ds"), task=a.task, robot=a.robot, scale=a.scale,
                           robot_pose=pose,
                           episodes=a.worlds, worlds=a.worlds, size=a.size, fps=a.fps, restyle=a.restyle,
                           episode_s=a.frames / a.fps)
        twin, rec, actions = twin_run(cfg, Path(cfg.out))
        save = Path(a.save_frames) if a.save_frames else None
        if save is not None:
            from PIL import Image

            from policies import read_dataset

            save.mkdir(parents=True, exist_ok=True)
            v = read_dataset(cfg.out)
            for key in rec.layout.cameras:
                Image.fromarray(v.episode_video(0, key)[-1]).save(save / f"twin_{key.rsplit('.', 1)[-1]}.png")
        peer = peer_run(rec, actions, cfg, save)
    res = {"scene": a.scene, "task": a.task, "robot": a.robot, "worlds": a.worlds, "size": a.size,
           "cameras": [c.name for c in rec.cameras], "restyle": a.restyle, "fps": a.fps,
           "splats": rec.cameras[0].sensors.splats is not None, **twin, **peer,
           "ratio": twin["twin_frames_per_s"] / peer["peer_frames_per_s"]}
    res = {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}
    if not a.json:
        for k, v in res.items():
            print(f"{k:>24}: {v}", file=sys.stderr)
    res["host"] = machine()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
