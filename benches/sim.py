"""Env-steps/s of the Franka in the bird scene: Twin's solvers vs MuJoCo's C engine, same physics, same run.

    python benches/sim.py --json --steps 20       # bird scene built from the reference COLMAP model
    python benches/sim.py --scene twins/bird --scale 0.004 --json
    python benches/sim.py --worlds 64 --solvers mujoco_cpu --json   # quicker; the scan run still happens

One environment step is 10 ms of simulated time (2 physics steps of 5 ms) for every world, Twin and peer
alike. Twin's runs: mujoco_cpu (MuJoCo's C core stepping all worlds in one batch, Newton's State synced after
every env step) and mujoco_warp (MuJoCo Warp kernels on Warp's CPU device). The peer is `mujoco.rollout` over
the same number of worlds on the exact MJCF the mujoco_cpu world runs (Newton's conversion of one world: same
robot, gains, gravity compensation, scan as convex pieces), on the same thread count (`--threads`, default 1).
`ratio_vs_mujoco` is Twin's fastest finite run over the peer at the largest world count (each mujoco_cpu run
also carries its own ratio, the peer measured right after it); rates are the faster of 2 timed windows.
Sensor images/s: 16 worlds' fixed cameras at 128x128, one image = RGB + depth + segmentation of one camera,
composited with the scene's splats when it has splats.ply. The default bird scene gets untrained splats (one
opaque Gaussian per coloured COLMAP point) so that the composite path is measured; the in-run peer is the same
sensors tracing everything every frame without splats (`sensor_full_trace_images_per_s`).
Scan run (`scan_*` keys; `--no-scan` skips it): the bird capture's own reconstruction, a 179k-triangle
non-convex TSDF mesh, at `--scan-scale` metres per unit (0.0566: the figurine ~10 cm tall, as above). The
bundle is built once if missing, by `twin reconstruct <shared data>/bird/images --out <cache>/bench/bird`
(~8 min on 2 cores; <cache> is $TWIN_CACHE, else $XDG_CACHE_HOME/twin, else ~/.cache/twin; `--scan` picks
another bundle). Its convex pieces are decomposed by CoACD on the first run and stored in the bundle (later
runs read them; `scan_pieces_origin` says which, `scan_decompose_seconds` what computing them took). The
Franka runs on mujoco_cpu against the scan's pieces at the largest world count, the peer is `mujoco.rollout`
on the same MJCF (`scan_ratio_vs_mujoco`), and with mujoco_warp among `--solvers` that solver runs the same
scene on its triangle-mesh contacts (`scan_warp_env_steps_per_s`): what `--solver auto` took before.
`host`: the machine measured on (twin_kit.machine). The last stdout line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from spatial import BundlePaths

# this file is named like the `sim` package: keep its folder off the import path when run as a script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from twin_kit import machine  # noqa: E402

BIRD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bird"  # ../shared beside the clone
SCAN_SCALE = 0.0566  # metres per unit of the bird reconstruction: its figurine (~1.8 units) 10 cm tall


def cache_root() -> Path:
    """$TWIN_CACHE, else $XDG_CACHE_HOME/twin, else ~/.cache/twin: outside the repository tree."""
    return Path(os.environ.get("TWIN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or
                                                      Path.home() / ".cache") / "twin")


def make_bird_scene(dest: Path, colmap: Path = BIRD, bird_height_m: float = 0.10, splats: bool = True) -> float:
    """Write a bundle for the bird capture: desk slab + bird hull from the COLMAP points, arbitrary scale,
    and (`splats`) a splats.ply of the coloured COLMAP points, so the sensors' splat composite is measured.

    Returns the metres-per-unit that makes the figurine `bird_height_m` tall.
    """
    import trimesh

    from spatial import (
        camera_focus,
        finalize_manifest,
        new_manifest,
        read_colmap,
        up_from_plane_and_cameras,
        write_cameras,
    )

    cams, pts, rgb = read_colmap(colmap, poses_only=True)
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
    mesh.export(BundlePaths(dest).collision)
    write_cameras(dest, cams)
    if splats:
        write_point_splats(BundlePaths(dest).splats, p, rgb)
    m = new_manifest(input=str(colmap), backend="benches/sim.py bird scene (desk slab + bird hull)")
    m["support_plane"] = {k: plane[k] for k in ("normal", "offset", "found", "extent_xy", "centroid") if k in plane}
    finalize_manifest(dest, m)
    return scale


def twin_rate(scene: str, scale: float, solver: str, worlds: int, steps: int, threads: int = 1,
              reps: int = 2) -> dict:
    from sim import WorldConfig, build_world, get_joint_targets, set_joint_targets, step

    t0 = time.perf_counter()
    w = build_world(WorldConfig(scene=scene, scale=scale, robot="franka", worlds=worlds, solver=solver,
                                substeps=2, frame_dt=0.01, threads=threads))
    build = time.perf_counter() - t0
    q0 = get_joint_targets(w)
    phase = np.linspace(0, np.pi, worlds)[:, None]

    def drive(k):
        q = q0.copy()
        q[:, :7] += 0.3 * np.sin(0.05 * k + phase)
        set_joint_targets(w, q)
        step(w, 1)

    for k in range(3):  # warm-up (first launches)
        drive(k)
    el = float("inf")
    for _ in range(reps):  # the fastest window: the machine is shared, load comes and goes
        t0 = time.perf_counter()
        for k in range(steps):
            drive(k)
        el = min(el, time.perf_counter() - t0)
    finite = bool(np.isfinite(w.state.body_q.numpy()).all())
    r = {"engine": "twin", "solver": solver, "worlds": worlds, "env_steps_per_s": steps * worlds / el,
         "steps": steps, "seconds": el, "build_seconds": build, "finite": finite}
    if solver == "mujoco_cpu":
        r["threads"] = w.solver.nthread
    return r, w


def peer_rate(mjcf: Path, worlds: int, steps: int, substeps: int = 2, frame_dt: float = 0.01,
              threads: int = 1, reps: int = 2) -> dict:
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
    datas = [mujoco.MjData(m) for _ in range(max(1, threads))]
    rollout.rollout(m, datas, init[:1], ctrl[:1, :4])  # warm-up
    el = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        state, _ = rollout.rollout(m, datas, init, ctrl)
        el = min(el, time.perf_counter() - t0)
    return {"engine": "mujoco", "solver": f"mujoco C (rollout, {len(datas)} thread(s))", "worlds": worlds,
            "env_steps_per_s": steps * worlds / el, "steps": steps, "seconds": el,
            "finite": bool(np.isfinite(state).all()), "nu": int(m.nu), "ngeom": int(m.ngeom)}


def ensure_scan(dest: Path) -> Path:
    """The bird capture's reconstruction at `dest`, built by `twin reconstruct` when missing (minutes)."""
    from spatial import read_bundle

    if not dest.exists():
        cmd = [sys.executable, "-m", "twin_cli", "reconstruct", str(BIRD / "images"), "--out", str(dest), "--quiet",
               "--json"]
        print(f"building the scan bundle once: {' '.join(cmd[2:])}", file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    read_bundle(dest)
    return dest


def scan_runs(scan: Path, scale: float, worlds: int, steps: int, threads: int, mjcf: Path, warp: bool) -> dict:
    """The Franka on the reconstructed scan: mujoco_cpu on its convex pieces vs `rollout` on the same MJCF, and
    (`warp`) mujoco_warp on its triangles; `scan_*` keys."""
    from sim import load_scene, resolve_solver
    from spatial import read_collision_pieces

    t0 = time.perf_counter()
    scene = load_scene(scan, scale)
    pieces = scene.convex_pieces()            # decomposed and stored on the first run, read back later
    ready = time.perf_counter() - t0
    path = BundlePaths(scan).collision_pieces
    stored = read_collision_pieces(path) if path.exists() and scene.pieces_origin != "convex" else None
    out = {"scan": str(scan), "scan_scale": scale, "scan_triangles": len(scene.faces), "scan_pieces": len(pieces),
           "scan_pieces_origin": scene.pieces_origin, "scan_pieces_seconds": ready,
           "scan_decompose_seconds": stored.seconds if stored else 0.0,
           "scan_piece_vertices": int(sum(len(p) for p in pieces)),
           "scan_solver_auto": resolve_solver("auto", "cpu", scene), "scan_worlds": worlds}
    r, w = twin_rate(str(scan), scale, "mujoco_cpu", worlds, steps, threads)
    mjcf.write_text(w.solver.mjcf)
    peer = peer_rate(mjcf, worlds, steps, threads=threads)
    print(json.dumps({"scan": r, "peer": peer}), file=sys.stderr)
    out.update(scan_env_steps_per_s=r["env_steps_per_s"], scan_finite=r["finite"],
               scan_peer_env_steps_per_s=peer["env_steps_per_s"],
               scan_ratio_vs_mujoco=r["env_steps_per_s"] / peer["env_steps_per_s"])
    if warp:
        rw, _ = twin_rate(str(scan), scale, "mujoco_warp", worlds, 3, threads, reps=1)  # seconds per env step
        print(json.dumps({"scan": rw}), file=sys.stderr)
        out.update(scan_warp_env_steps_per_s=rw["env_steps_per_s"],
                   scan_speedup_vs_warp=r["env_steps_per_s"] / rw["env_steps_per_s"])
    return out


def write_point_splats(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Untrained splats: one opaque isotropic Gaussian per coloured point (3DGS's initialisation)."""
    from scenes import gaussians_from_points, write_splats_ply

    write_splats_ply(path, gaussians_from_points(xyz, rgb.astype(np.float64) / 255.0, sh_degree=0,
                                                 init_opacity=0.9))


def sensor_rate(w, renders: int) -> dict:
    """Images/s of 16 worlds' fixed 128x128 cameras (RGB + depth + segmentation; the splat composite when the
    scene has splats.ply) and, as the in-run peer, of the same sensors tracing everything every frame."""
    from sim import Sensors
    from spatial import Camera, look_at

    base = w.base_xform[:3]
    R, t = look_at(base + np.array([1.2, 0.9, 0.8]), base + np.array([0.2, 0.0, 0.3]))
    cam = Camera("bench", 128, 128, 110.0, 110.0, 63.5, 63.5, R, t)
    out = {}
    for name, kw in (("sensor_images_per_s", {}), ("sensor_full_trace_images_per_s",
                                                   {"splats": False, "cache_static": False})):
        s = Sensors(w, cam, **kw)
        f = s.render()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(renders):
            s.render(out=f)  # into the same tensors each frame, as a training loop reads them
        el, cpu = time.perf_counter() - t0, time.process_time() - c0
        out[name] = renders * w.n / el
        out[name.replace("_per_s", "_per_cpu_s")] = renders * w.n / cpu
        if not kw:
            out["sensor_splats"] = 0 if s.splats is None else s.splats.count
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", help="bundle or mesh file (default: bird scene from the reference COLMAP model)")
    ap.add_argument("--scale", type=float, help="metres per scene unit for an arbitrary-scale bundle")
    ap.add_argument("--worlds", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--solvers", nargs="+", default=["mujoco_cpu", "mujoco_warp"])
    ap.add_argument("--steps", type=int, default=20, help="timed env steps per run")
    ap.add_argument("--threads", type=int, default=1, help="threads of mujoco_cpu and of the peer")
    ap.add_argument("--scan", type=Path, help="reconstructed bundle for the scan run (default: the bird capture's, "
                    "built once into the cache)")
    ap.add_argument("--scan-scale", type=float, default=SCAN_SCALE, help="metres per unit of --scan")
    ap.add_argument("--no-scan", action="store_true", help="skip the scan run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from twin_kit import quiet_warp

    quiet_warp()  # stdout carries the JSON line only

    tmp = Path(tempfile.mkdtemp(prefix="twin-bench-sim-"))
    scene, scale = args.scene, args.scale
    if scene is None:
        scene = str(tmp / "bird")
        scale = make_bird_scene(Path(scene))
    runs, worlds_by = [], {}
    mjcf = tmp / "franka_scene.xml"

    def peer(n: int, twin_run: dict | None = None) -> None:
        r = peer_rate(mjcf, n, args.steps * 10, threads=args.threads)
        runs.append(r)
        print(json.dumps(r), file=sys.stderr)
        if twin_run is not None:
            twin_run["ratio_vs_mujoco"] = twin_run["env_steps_per_s"] / r["env_steps_per_s"]

    for solver in args.solvers:
        for n in args.worlds:
            steps = args.steps * (10 if solver == "mujoco_cpu" else 1)  # fast runs: longer, less timer noise
            r, w = twin_rate(scene, scale, solver, n, steps, args.threads)
            runs.append(r)
            worlds_by[(solver, n)] = w
            print(json.dumps(r), file=sys.stderr)
            if solver == "mujoco_cpu":  # the peer right after, on the exact MJCF these worlds run
                mjcf.write_text(w.solver.mjcf)
                peer(n, r)
    if "mujoco_cpu" not in args.solvers:
        mjcf.write_text(twin_rate(scene, scale, "mujoco_cpu", 1, 1)[1].solver.mjcf)
        for n in args.worlds:
            peer(n)
    try:
        r, _ = twin_rate(scene, scale, "mujoco_c", 1, args.steps * 5)
        r["note"] = "Newton's MuJoCo C path simulates one world only"
        runs.append(r)
        print(json.dumps(r), file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - report and continue with the other runs
        runs.append({"engine": "twin", "solver": "mujoco_c", "error": str(e)[:200]})
    sensor = None
    w16 = worlds_by.get((args.solvers[0], 16))
    if w16 is not None:
        sensor = sensor_rate(w16, 10)
    big = max(args.worlds)
    best = max((r for r in runs if r.get("engine") == "twin" and r.get("worlds") == big and r.get("finite")),
               key=lambda r: r["env_steps_per_s"], default={"env_steps_per_s": 0.0, "solver": None})
    twin = best["env_steps_per_s"]
    peer = max((r["env_steps_per_s"] for r in runs if r.get("engine") == "mujoco" and r["worlds"] == big),
               default=float("nan"))
    scan = {}
    if not args.no_scan:
        scan = scan_runs(ensure_scan(args.scan or cache_root() / "bench" / "bird"), args.scan_scale, big,
                         args.steps * 10, args.threads, tmp / "franka_scan.xml", "mujoco_warp" in args.solvers)
    out = {"bench": "sim", "robot": "franka", "scene": scene, "scale": scale, "worlds": big,
           "twin_solver": best["solver"], "threads": args.threads,
           "twin_env_steps_per_s": twin, "peer_env_steps_per_s": peer, "ratio_vs_mujoco": twin / peer,
           **(sensor or {"sensor_images_per_s": None}), "sensor": "16 worlds, 128x128, rgb+depth+seg",
           **scan, "runs": runs}
    out["host"] = machine()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
