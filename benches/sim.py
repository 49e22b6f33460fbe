"""Env-steps/s of the Franka in the bird scene: Twin (Newton solvers on Warp's CPU) vs MuJoCo's C engine.

    python benches/sim.py --json                  # bird scene built from the reference COLMAP model
    python benches/sim.py --scene scenes/bird --scale 0.004 --json

One environment step is 10 ms of simulated time (2 physics steps of 5 ms) for every world, Twin and peer
alike. The peer is `mujoco.rollout` over the same number of worlds, on the MJCF that Newton itself exports
from the same model (same robot, gains and gravity compensation), one thread like Warp's CPU kernels.
Sensor images/s: 16 worlds at 128x128, RGB + depth + segmentation per image.
The last stdout line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# this file is named like the `sim` package: keep its folder off the import path when run as a script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

BIRD = Path("/work/shared/data/bird")


def make_bird_scene(dest: Path, colmap: Path = BIRD, bird_height_m: float = 0.10) -> float:
    """Write a bundle for the bird capture: desk slab + bird hull from the COLMAP points, arbitrary scale.

    Returns the metres-per-unit that makes the figurine `bird_height_m` tall.
    """
    import trimesh

    from spatial.align import camera_focus, up_from_plane_and_cameras
    from spatial.bundle import finalize_manifest, new_manifest, write_cameras
    from spatial.colmap_io import read_colmap

    cams, pts, _ = read_colmap(colmap, poses_only=True)
    T, plane = up_from_plane_and_cameras(pts, cams)
    p = pts @ T[:3, :3].T + T[:3, 3]
    cams = [c.transformed(T) for c in cams]
    focus = camera_focus(cams)
    fxy = focus[:2] if focus is not None else np.median(p[:, :2], 0)
    rad = 0.25 * np.median(np.linalg.norm(np.stack([c.center for c in cams])[:, :2] - fxy, axis=1))
    thr = plane.get("threshold", 0.0) * 2 + 1e-9
    bird = p[(np.linalg.norm(p[:, :2] - fxy, axis=1) < rad) & (p[:, 2] > thr)]
    top = float(np.percentile(bird[:, 2], 98))
    bird = bird[bird[:, 2] <= top]
    hull = trimesh.convex.convex_hull(np.vstack([bird, np.c_[bird[:, :2], np.zeros(len(bird))]]))
    scale = bird_height_m / top
    size = np.array([1.4, 1.0]) / scale  # a 1.4 x 1.0 m desk, 4 cm thick, under the bird
    desk = trimesh.creation.box(extents=(size[0], size[1], 0.04 / scale))
    desk.apply_translation((fxy[0] + 0.25 * size[0], fxy[1], -0.02 / scale))
    mesh = trimesh.util.concatenate([desk, hull])
    dest.mkdir(parents=True, exist_ok=True)
    mesh.export(dest / "collision.ply")
    write_cameras(dest, cams)
    m = new_manifest(input=str(colmap), backend="benches/sim.py bird scene (desk slab + bird hull)")
    m["support_plane"] = {k: plane[k] for k in ("normal", "offset", "found", "extent_xy", "centroid") if k in plane}
    finalize_manifest(dest, m)
    return scale


def twin_rate(scene: str, scale: float, solver: str, worlds: int, steps: int) -> dict:
    from sim import control
    from sim.world import WorldConfig, build_world, step

    t0 = time.perf_counter()
    w = build_world(WorldConfig(scene=scene, scale=scale, robot="franka", worlds=worlds, solver=solver,
                                substeps=2, frame_dt=0.01))
    build = time.perf_counter() - t0
    q0 = control.get_joint_targets(w)
    phase = np.linspace(0, np.pi, worlds)[:, None]

    def drive(k):
        q = q0.copy()
        q[:, :7] += 0.3 * np.sin(0.05 * k + phase)
        control.set_joint_targets(w, q)
        step(w, 1)

    for k in range(3):  # warm-up (first launches)
        drive(k)
    t0 = time.perf_counter()
    for k in range(steps):
        drive(k)
    el = time.perf_counter() - t0
    finite = bool(np.isfinite(w.state.body_q.numpy()).all())
    return {"engine": "twin", "solver": solver, "worlds": worlds, "env_steps_per_s": steps * worlds / el,
            "steps": steps, "seconds": el, "build_seconds": build, "finite": finite}, w


def export_mjcf(w, path: Path) -> None:
    """Newton's own MJCF export of a one-world model (robot + scene, as MuJoCo sees it)."""
    import newton

    newton.solvers.SolverMuJoCo(w.model, use_mujoco_cpu=True, save_to_mjcf=str(path))


def peer_rate(mjcf: Path, worlds: int, steps: int, substeps: int = 2, frame_dt: float = 0.01) -> dict:
    import mujoco
    from mujoco import rollout

    m = mujoco.MjModel.from_xml_path(str(mjcf))
    m.opt.timestep = frame_dt / substeps
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    s0 = np.empty(mujoco.mj_stateSize(m, spec))
    mujoco.mj_getState(m, d, s0, spec)
    init = np.tile(s0, (worlds, 1))
    n = steps * substeps
    ctrl = np.tile(d.ctrl, (worlds, n, 1))
    if m.nu:
        k = np.arange(n)[None, :, None] / substeps
        ctrl[:, :, :min(7, m.nu)] += 0.3 * np.sin(0.05 * k + np.linspace(0, np.pi, worlds)[:, None, None])
    datas = [mujoco.MjData(m)]
    rollout.rollout(m, datas, init[:1], ctrl[:1, :4])  # warm-up
    t0 = time.perf_counter()
    state, _ = rollout.rollout(m, datas, init, ctrl)
    el = time.perf_counter() - t0
    return {"engine": "mujoco", "solver": "mujoco C (rollout, 1 thread)", "worlds": worlds,
            "env_steps_per_s": steps * worlds / el, "steps": steps, "seconds": el,
            "finite": bool(np.isfinite(state).all()), "nu": int(m.nu), "ngeom": int(m.ngeom)}


def sensor_rate(w, renders: int) -> float:
    from sim.sensors import Sensors
    from spatial.cameras import Camera, look_at

    base = w.base_xform[:3]
    R, t = look_at(base + np.array([1.2, 0.9, 0.8]), base + np.array([0.2, 0.0, 0.3]))
    s = Sensors(w, Camera("bench", 128, 128, 110.0, 110.0, 63.5, 63.5, R, t))
    s.render()
    t0 = time.perf_counter()
    for _ in range(renders):
        s.render()
    return renders * w.n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", help="bundle or mesh file (default: bird scene from the reference COLMAP model)")
    ap.add_argument("--scale", type=float, help="metres per scene unit for an arbitrary-scale bundle")
    ap.add_argument("--worlds", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--solvers", nargs="+", default=["mujoco_warp"])
    ap.add_argument("--steps", type=int, default=20, help="timed env steps per run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import warp as wp

    wp.config.quiet = True  # stdout carries the JSON line only

    tmp = Path(tempfile.mkdtemp(prefix="twin-bench-sim-"))
    scene, scale = args.scene, args.scale
    if scene is None:
        scene = str(tmp / "bird")
        scale = make_bird_scene(Path(scene))
    runs, worlds_by = [], {}
    for solver in args.solvers:
        for n in args.worlds:
            r, w = twin_rate(scene, scale, solver, n, args.steps)
            runs.append(r)
            worlds_by[(solver, n)] = w
            print(json.dumps(r), file=sys.stderr)
    one = worlds_by.get((args.solvers[0], 1)) or twin_rate(scene, scale, args.solvers[0], 1, 1)[1]
    mjcf = tmp / "franka_scene.xml"
    export_mjcf(one, mjcf)
    try:
        r, _ = twin_rate(scene, scale, "mujoco_c", 1, args.steps * 5)
        r["note"] = "Newton's MuJoCo C path simulates one world only"
        runs.append(r)
        print(json.dumps(r), file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - report and continue with the other runs
        runs.append({"engine": "twin", "solver": "mujoco_c", "error": str(e)[:200]})
    for n in args.worlds:
        r = peer_rate(mjcf, n, args.steps * 10)
        runs.append(r)
        print(json.dumps(r), file=sys.stderr)
    sensor = None
    w16 = worlds_by.get((args.solvers[0], 16))
    if w16 is not None:
        sensor = sensor_rate(w16, 5)
    big = max(args.worlds)
    twin = max((r["env_steps_per_s"] for r in runs if r.get("engine") == "twin" and r.get("worlds") == big
                and r.get("finite")), default=0.0)
    peer = max((r["env_steps_per_s"] for r in runs if r.get("engine") == "mujoco" and r["worlds"] == big),
               default=float("nan"))
    out = {"bench": "sim", "robot": "franka", "scene": scene, "scale": scale, "worlds": big,
           "twin_env_steps_per_s": twin, "peer_env_steps_per_s": peer, "ratio_vs_mujoco": twin / peer,
           "sensor_images_per_s": sensor, "sensor": "16 worlds, 128x128, rgb+depth+seg", "runs": runs}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
