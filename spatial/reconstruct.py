"""`twin reconstruct`: phone video or photos -> a scene bundle (cameras, depth, points, collision mesh).

Stages: frames -> SfM cameras (or given poses) -> +Z up and metric scale -> multi-view depth -> fusion
-> bundle + COLMAP / nerfstudio exports. With `--method vggt` one network pass (spatial.feedforward)
gives the cameras and the depth maps instead of SfM and plane sweep. The bundle is built in a temporary
sibling and renamed into place only when every stage succeeded, so a failure never damages an existing bundle.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spatial.bundle import BundlePaths, finalize_manifest, new_manifest, staged_bundle, write_cameras
from spatial.bundle_files import write_depth, write_points
from spatial.cameras import Camera
from twin_kit import InputError, emit_json, info, progress, warn

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm"}


@dataclass
class Reconstruction:
    """What the stages produce before it is written: posed frames, points, depth and mesh."""

    cameras: list[Camera]
    images: list[np.ndarray]
    points: np.ndarray
    colors: np.ndarray
    report: dict = field(default_factory=dict)


def classify_input(path: Path) -> str:
    """'video', 'photos', 'colmap' or 'transforms'; InputError for anything else."""
    from spatial.interop.reference import reference_kind

    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return "video"
        if path.suffix.lower() == ".json":
            return "transforms"
        raise InputError(f"{path}: unsupported input (expected a video {sorted(VIDEO_SUFFIXES)}, a folder of "
                         "photos, a COLMAP model or a transforms.json)")
    kind = reference_kind(path)
    if kind == "bundle":
        raise InputError(f"{path}: this is already a Twin bundle; reconstruct from the capture itself")
    return kind or "photos"


def run_reconstruct(cfg, json_out: bool = False) -> int:
    """CLI entry: validate early (input, output folder, options; before any heavy work), then build the bundle
    atomically (staged_bundle locks --out and checks it again when it swaps the result in)."""
    from spatial.bundle import is_bundle
    from spatial.sfm.colmap_log import quiet_colmap
    from twin_kit import check_output_dir

    t0 = time.perf_counter()
    inp = Path(cfg.input)
    classify_input(inp)
    out = Path(cfg.out)
    check_output_dir(out, inputs=[inp, cfg.poses], overwrite=cfg.overwrite, replaceable=is_bundle,
                     kind="Twin bundle", what="--out")
    if cfg.poses is not None and not Path(cfg.poses).exists():
        raise InputError(f"--poses {cfg.poses}: no such file or directory")
    _check_method(cfg, inp)
    if cfg.known_distance is not None:
        _parse_known_distance(cfg.known_distance)
    quiet_colmap()
    summary = reconstruct(cfg)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    info(f"[green]wrote[/green] {out}: {summary['registered']}/{summary['frames']} frames registered, "
         f"{summary['points']} points, {summary['mesh_triangles']} mesh triangles, scale "
         f"{'metric (' + summary['scale_source'] + ')' if summary['metric'] else 'arbitrary'}, "
         f"{summary['seconds']:.1f} s")
    if json_out:
        emit_json(summary)
    return 0


def _check_method(cfg, inp: Path) -> None:
    """--method vggt needs a readable local checkpoint and frames, not given poses (checked before any work)."""
    if cfg.method != "vggt":
        for name, given in (("--weights", cfg.weights is not None), ("--chunk", cfg.chunk > 0),
                            ("--refine", cfg.refine)):
            if given:
                raise InputError(f"{name} is for --method vggt")
        return
    if cfg.chunk > 0 and cfg.overlap >= cfg.chunk:
        raise InputError(f"--overlap {cfg.overlap} must be smaller than --chunk {cfg.chunk}")
    if cfg.weights is None:
        raise InputError("--method vggt needs --weights PATH (a VGGT model.pt / model.safetensors; "
                         "Twin never downloads weights)")
    if cfg.poses is not None or classify_input(inp) in ("colmap", "transforms"):
        raise InputError("--method vggt estimates the cameras itself: give a video or a folder of photos, "
                         "without --poses")
    from spatial.feedforward.weights import read_checkpoint_config

    read_checkpoint_config(cfg.weights)  # InputError now for a missing or unreadable file


def _parse_known_distance(s: str) -> tuple[str, str, float]:
    parts = [p.strip() for p in s.split(",")]
    try:
        a, b, m = parts
        metres = float(m)
    except ValueError:
        raise InputError(f"--known-distance must be 'FRAME_A,FRAME_B,METRES', got {s!r}") from None
    if not metres > 0:
        raise InputError(f"--known-distance metres must be positive, got {m}")
    return a, b, metres


def reconstruct(cfg) -> dict:
    """Run every stage and write the bundle at cfg.out; returns the summary dict."""
    from spatial.capture.frames import FramesConfig, load_frames

    inp = Path(cfg.input)
    kind = classify_input(inp)
    timings: dict[str, float] = {}
    with progress(cfg.quiet) as prog, staged_bundle(cfg.out, overwrite=cfg.overwrite) as tmp:
        work = tmp / "_work"
        work.mkdir()
        t = time.perf_counter()
        poses_path = cfg.poses if cfg.poses is not None else (inp if kind in ("colmap", "transforms") else None)
        image_source = _image_dir_for_poses(inp, kind) if kind in ("colmap", "transforms") else inp
        fcfg = FramesConfig(max_side=cfg.max_side, max_keyframes=cfg.max_frames)
        frames = load_frames(image_source, fcfg, progress=prog)
        timings["frames"] = time.perf_counter() - t

        t = time.perf_counter()
        network = None
        if cfg.method == "vggt":  # cameras and depth from one network pass
            network = _from_network(frames, cfg, prog)
            rec = network[0]
        elif poses_path is not None:
            rec = _from_given_poses(frames, Path(poses_path))
        elif kind == "video":
            frames, rec = _from_video_sfm(frames, image_source, fcfg, work, cfg, prog)
        else:
            rec = _from_sfm(frames, work, cfg, prog, kind)
        rec.report.setdefault("notes", []).extend(frames.notes)  # warned when the frames were read
        timings["cameras"] = time.perf_counter() - t

        if network is None:
            rec = _undistort(rec)
            t = time.perf_counter()
            depth_ids, depths = _dense_depth(rec, cfg, prog)
            timings["depth"] = time.perf_counter() - t
        else:
            _, depth_ids, depths = network

        # Depth maps live in camera frames: alignment rotates/moves them rigidly and scales them, so the
        # support plane is found on the dense points (textureless tables have few sparse points).
        t = time.perf_counter()
        dense_pts, dense_cols, dense_ok = _fuse(rec, depth_ids, depths)
        rec, S, scale_info, plane = _align(rec, cfg, dense_pts)
        depths = [_transform_depth(d, S) for d in depths]
        dense_pts = dense_pts @ S[:3, :3].T + S[:3, 3] if len(dense_pts) else dense_pts
        timings["align"] = time.perf_counter() - t

        t = time.perf_counter()
        n_pts, n_tris = _write_geometry(tmp, rec, depth_ids, depths, dense_pts, dense_cols, cfg, plane, dense_ok)
        timings["fusion"] = time.perf_counter() - t

        _write_frames(tmp, rec, depth_ids, depths)
        _write_exports(tmp, rec)
        shutil.rmtree(work, ignore_errors=True)
        manifest = new_manifest(input=str(inp), input_kind=kind, poses=str(poses_path) if poses_path else None,
                                backend=rec.report.get("backend", "twin"), versions=_versions(),
                                config={k: str(v) if isinstance(v, Path) else v
                                        for k, v in dataclasses.asdict(cfg).items()})
        manifest["scale"] = scale_info
        manifest["support_plane"] = plane
        manifest["timings"] = {k: round(v, 2) for k, v in timings.items()}
        manifest["metrics"]["reconstruct"] = {
            "frames": rec.report.get("frames", len(rec.cameras)), "registered": len(rec.cameras),
            "unregistered": rec.report.get("unregistered", {}), "skipped_inputs": rec.report.get("skipped", {}),
            "points": n_pts, "mesh_triangles": n_tris, "depth_frames": len(depth_ids),
            "dense_depth": "ok" if dense_ok else "failed", "points_source": "dense" if dense_ok else "sparse SfM",
            "collision_mesh": n_tris > 0, "notes": rec.report.get("notes", []),
            **{k: rec.report[k] for k in ("sfm_attempt", "sfm_attempts", "dropped", "network", "moving")
               if k in rec.report},
            **({"video": frames.decoding} if frames.decoding else {}),
        }
        finalize_manifest(tmp, manifest)
    return {"registered": len(rec.cameras), "frames": rec.report.get("frames", len(rec.cameras)),
            "points": n_pts, "mesh_triangles": n_tris, "metric": scale_info["metric"],
            "scale_source": scale_info["source"], "bundle": str(cfg.out), "timings": manifest["timings"],
            "dense_depth": "ok" if dense_ok else "failed", "notes": rec.report.get("notes", []),
            **{k: rec.report[k] for k in ("network", "moving") if k in rec.report}}


def _note(rec: Reconstruction, message: str) -> None:
    """A one-line warning now, and the same line in the manifest's notes."""
    warn(message)
    rec.report.setdefault("notes", []).append(message)


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("twin", "pycolmap", "torch", "open3d-cpu", "open3d", "opencv-contrib-python-headless"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def _image_dir_for_poses(model: Path, kind: str) -> Path:
    """Where the images of a COLMAP model / transforms.json live (the usual layouts)."""
    base = model.parent if model.is_file() else model
    ups = [base, *list(base.parents)[:3]]
    for cand in [u / "images" for u in ups] + [base]:
        if cand.is_dir() and any(p.suffix.lower() in (".jpg", ".jpeg", ".png") for p in cand.iterdir()):
            return cand
    raise InputError(f"{model}: cannot find the images for these poses (looked for an images/ folder beside it)")


def _from_sfm(frames, work: Path, cfg, prog, kind: str) -> Reconstruction:
    from spatial.sfm.mapper import SfmConfig, run_sfm

    scfg = SfmConfig(matching=cfg.matching, mapper=cfg.mapper, max_features=cfg.max_features,
                     motion_masks=cfg.motion_masks)
    res = run_sfm(frames, work, scfg, progress=prog)
    by_name = {f.name: f for f in frames.frames}
    cams = sorted(res.cameras, key=lambda c: c.name)
    images = [by_name[c.name].image for c in cams]
    report = {"frames": len(frames.frames), "unregistered": dict(res.unregistered),
              "skipped": {**dict(frames.skipped), **res.dropped}, "backend": f"pycolmap {res.mapper}",
              "sfm_attempt": res.attempt, "sfm_attempts": res.attempts, "dropped": dict(res.dropped),
              "notes": [f"dropped {k}: {v}" for k, v in res.dropped.items()]}  # warned by run_sfm
    if res.moving:
        report["moving"] = res.moving
    if len(res.attempts) > 1:
        report["notes"].append(f"cameras from the mapping attempt '{res.attempt}' "
                               f"({max(a['registered'] for a in res.attempts)} of {len(frames.frames)} frames)")
        info(report["notes"][-1])
    missing = {k: v for k, v in res.unregistered.items() if k not in res.dropped}
    if missing:
        warn(f"{len(missing)} of {len(frames.frames)} frames not registered: "
             + "; ".join(f"{k}: {v}" for k, v in list(missing.items())[:5])
             + (" ..." if len(missing) > 5 else ""))
    return Reconstruction(cams, images, np.asarray(res.points, np.float64).reshape(-1, 3),
                          np.asarray(res.colors, np.uint8).reshape(-1, 3), report)


def _from_video_sfm(frames, video: Path, fcfg, work: Path, cfg, prog):
    """SfM on a video's keyframes; when too few register, once more on keyframes twice as dense.

    Keyframes at the default parallax can be few and far apart on a slow hand-held clip (five over eight seconds
    of the bedroom video), which leaves mapping with little to hold on to: halving the parallax that starts a new
    keyframe (and starting one sooner when tracks are lost) gives it more, shorter baselines.
    """
    from spatial.capture.frames import load_frames
    from spatial.sfm.mapper import TooFewRegistered

    try:
        return frames, _from_sfm(frames, work, cfg, prog, "video")
    except TooFewRegistered as e:
        denser = dataclasses.replace(fcfg, parallax=fcfg.parallax / 2,
                                     min_tracked=1.0 - (1.0 - fcfg.min_tracked) / 2)
        more = load_frames(video, denser, progress=prog)
        if len(more.frames) <= len(frames.frames):
            raise
        warn(f"{e}; retrying with denser keyframes ({len(more.frames)} instead of {len(frames.frames)})")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        rec = _from_sfm(more, work, cfg, prog, "video")
        rec.report.setdefault("notes", []).append(
            f"cameras from denser keyframes ({len(more.frames)}): the first {len(frames.frames)} registered too few")
        return more, rec


def _from_network(frames, cfg, prog) -> tuple[Reconstruction, list[int], list]:
    """Cameras, per-frame depth and points from the feed-forward network (spatial.feedforward)."""
    from spatial.feedforward.pipeline import NetworkOptions, network_reconstruction

    options = NetworkOptions(chunk=cfg.chunk, overlap=cfg.overlap, refine=cfg.refine)
    net = network_reconstruction(frames, Path(cfg.weights), progress=prog, options=options)
    images = [f.image for f in frames.frames]
    rec = Reconstruction(net.cameras, images, net.points, net.colors, net.report)
    return rec, list(range(len(net.depths))), net.depths


def _from_given_poses(frames, poses: Path) -> Reconstruction:
    """Use the cameras of a COLMAP model / transforms.json, rescaled to the working resolution."""
    from spatial.interop.colmap_io import find_colmap_model, read_colmap
    from spatial.interop.reference import read_reference

    given = {Path(c.name).name: c for c in read_reference(poses)}
    points = np.zeros((0, 3))
    colors = np.zeros((0, 3), np.uint8)
    if find_colmap_model(poses) is not None:
        _, points, colors = read_colmap(poses, poses_only=True)
    cams, images, missing = [], [], []
    for f in frames.frames:
        c = given.get(Path(f.name).name)
        if c is None:
            missing.append(f.name)
            continue
        h, w = f.image.shape[:2]
        cams.append(dataclasses.replace(c.scaled(w / c.width), name=f.name, width=w, height=h))
        images.append(f.image)
    if len(cams) < 3:
        raise InputError(f"{poses}: only {len(cams)} of the images have a pose there (need at least 3)")
    return Reconstruction(cams, images, points, colors,
                          {"frames": len(frames.frames), "backend": f"given poses ({poses.name})",
                           "unregistered": {m: "no pose in the given model" for m in missing},
                           "skipped": dict(frames.skipped)})


def _undistort(rec: Reconstruction) -> Reconstruction:
    """Undistorted images with the same intrinsics, so that every later stage is pinhole."""
    import cv2

    cams, images = [], []
    for c, im in zip(rec.cameras, rec.images):
        if c.dist and any(abs(d) > 0 for d in c.dist):
            im = cv2.undistort(im, c.K, np.asarray(c.dist, np.float64))
            c = dataclasses.replace(c, dist=[])
        cams.append(c)
        images.append(im)
    return dataclasses.replace(rec, cameras=cams, images=images)


def _align(rec: Reconstruction, cfg, dense_points: np.ndarray) -> tuple[Reconstruction, np.ndarray, dict, dict]:
    """+Z up on the support plane, then metres from a marker or a known distance when possible.

    Returns the aligned reconstruction, the 4x4 similarity applied, the scale record and the support plane.
    """
    from spatial.sfm.align import (
        apply_similarity,
        distance_scale,
        marker_scale,
        scale_matrix,
        up_from_plane_and_cameras,
    )

    pts = dense_points if len(dense_points) >= 100 else rec.points
    if len(pts) < 10:
        pts = np.stack([c.center for c in rec.cameras])
    T, plane = up_from_plane_and_cameras(pts, rec.cameras)
    cams, points = apply_similarity(T, rec.cameras, rec.points)
    scale_info = {"metric": False, "source": "arbitrary", "metres_per_unit": None}
    res = None
    if cfg.marker_size is not None:
        step = max(1, len(cams) // 60)
        res = marker_scale(rec.images[::step], cams[::step], cfg.marker_size)
        if res is None:
            warn("no marker seen in two or more views: the scale stays arbitrary")
    if res is None and cfg.known_distance is not None:
        a, b, metres = _parse_known_distance(cfg.known_distance)
        res = distance_scale(cams, a, b, metres)
    if res is not None:
        Ssc = scale_matrix(res.scale)
        cams, points = apply_similarity(Ssc, cams, points)
        T = Ssc @ T
        plane.pop("offset_input", None)
        for k in ("extent_xy", "centroid"):
            if k in plane:
                plane[k] = [v * res.scale for v in plane[k]]
        if "threshold" in plane:
            plane["threshold"] *= res.scale
        scale_info = {"metric": True, "source": res.source, "metres_per_unit": float(res.scale),
                      "rel_std": float(res.rel_std), "views": int(res.n_views)}
        info(f"metric scale from {res.source}: {res.scale:.5g} m per unit "
             f"({res.n_views} views, spread {res.rel_std * 100:.2f} %)")
    return dataclasses.replace(rec, cameras=cams, points=points), T, scale_info, plane


def _transform_depth(d, S: np.ndarray):
    """A depth result after the world is mapped by similarity S: camera moved, depth values scaled."""
    s = float(np.cbrt(np.linalg.det(S[:3, :3])))
    return dataclasses.replace(d, depth=(d.depth * s).astype(np.float32), camera=d.camera.transformed(S))


def _depth_subset(n: int, k: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted(set(np.round(np.linspace(0, n - 1, k)).astype(int).tolist()))


def _dense_depth(rec: Reconstruction, cfg, prog):
    from spatial.dense.mvs import DepthConfig, estimate_depths

    ids = _depth_subset(len(rec.cameras), max(2, cfg.depth_frames))  # plane sweep needs a second view
    task = prog.add_task("dense depth", total=len(ids), status="")

    def tick(done, total):
        prog.update(task, completed=done, status=f"{done}/{total} views")

    dcfg = DepthConfig(max_side=cfg.depth_max_side)
    res = estimate_depths([rec.images[i] for i in ids], [rec.cameras[i] for i in ids], dcfg,
                          sparse_points=rec.points if len(rec.points) else None, progress=tick)
    return ids, res


def _fuse(rec: Reconstruction, ids, depths) -> tuple[np.ndarray, np.ndarray, bool]:
    """Coloured point cloud from the filtered depth maps, and whether dense depth worked.

    When it found (almost) nothing, e.g. views too far apart for plane sweep, the sparse SfM points stand in
    and the failure is noted; InputError only when there are no sparse points either.
    """
    from spatial.dense.fusion import fuse_points

    try:
        pts, cols = fuse_points([d.depth for d in depths], [rec.images[i] for i in ids],
                                [d.camera for d in depths], confidences=[d.confidence for d in depths])
    except InputError:  # no view has a valid depth pixel
        pts, cols = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    if len(pts) >= 100:
        return np.asarray(pts, np.float64), np.asarray(cols, np.uint8), True
    if len(rec.points) == 0:
        raise InputError("no 3D points could be reconstructed: the images do not overlap enough")
    _note(rec, f"dense depth failed ({len(pts)} fused points: the views are too far apart or too plain for "
               f"plane-sweep stereo); the bundle keeps the {len(rec.cameras)} cameras and the {len(rec.points)} "
               "sparse SfM points as its point cloud, and has no collision mesh")
    return np.asarray(rec.points, np.float64), np.asarray(rec.colors, np.uint8), False


def support_patch(cameras: list[Camera], points: np.ndarray, cells: int = 24):
    """A square grid mesh on z = 0 under the captured objects, half as wide as the cameras' orbit radius x 1.5."""
    import trimesh

    centres = np.stack([c.center for c in cameras])
    low = points[points[:, 2] < np.percentile(points[:, 2], 50)]
    mid = np.median(low[:, :2] if len(low) else points[:, :2], axis=0)
    radius = float(np.median(np.linalg.norm(centres[:, :2] - mid, axis=1)))
    half = 0.75 * max(radius, 1e-6)
    g = np.linspace(-half, half, cells + 1)
    xx, yy = np.meshgrid(g, g, indexing="xy")
    verts = np.stack([xx.ravel() + mid[0], yy.ravel() + mid[1], np.zeros(xx.size)], 1)
    i = np.arange(cells)[:, None] * (cells + 1) + np.arange(cells)[None, :]
    i = i.ravel()
    faces = np.concatenate([np.stack([i, i + 1, i + cells + 2], 1), np.stack([i, i + cells + 2, i + cells + 1], 1)])
    colour = np.array([200, 200, 200, 255], np.uint8)
    return trimesh.Trimesh(verts, faces, vertex_colors=np.tile(colour, (len(verts), 1)), process=False)


def _write_geometry(root: Path, rec: Reconstruction, ids, depths, pts, cols, cfg, plane: dict,
                    dense_ok: bool = True) -> tuple[int, int]:
    """points.ply and the simplified TSDF collision mesh (collision.ply), both in the aligned frame.

    Without dense depth there is nothing to mesh: only points.ply (the sparse points) is written.
    """
    import trimesh

    from spatial.dense.fusion import FusionConfig, tsdf_mesh

    paths = BundlePaths(root)
    write_points(paths.points, pts, cols)
    if not dense_ok:
        return int(len(pts)), 0
    failure = ""
    try:
        mesh = tsdf_mesh([d.depth for d in depths], [rec.images[i] for i in ids], [d.camera for d in depths],
                         cfg=FusionConfig(target_triangles=cfg.mesh_triangles),
                         confidences=[d.confidence for d in depths])
    except InputError as e:  # the depth that made points.ply does not close into a surface
        mesh, failure = None, f" ({e})"
    skipped = mesh.metadata.get("skipped_views", []) if mesh is not None else []
    if skipped:  # tsdf_mesh warned already
        rec.report.setdefault("notes", []).append(
            f"TSDF fusion skipped {len(skipped)} of {len(depths)} views without usable depth: {', '.join(skipped)}")
    if not plane.get("found") and len(pts):
        # Textureless supports (white desks) give no depth; the support plane found from the cameras and the
        # lowest surface points closes the collision mesh under the objects, so that they can rest on it.
        patch = support_patch(rec.cameras, pts)
        mesh = patch if mesh is None or len(mesh.faces) == 0 else trimesh.util.concatenate([mesh, patch])
        plane["completed"] = True
        plane["completed_extent_xy"] = patch.bounds[:, :2].ravel()[[0, 1, 2, 3]].tolist()
    n_tris = int(len(mesh.faces)) if mesh is not None else 0
    if n_tris:
        mesh.export(paths.collision)
    else:
        _note(rec, f"the TSDF fusion produced no surface{failure}; the bundle has no collision mesh")
    return int(len(pts)), n_tris


def _write_frames(root: Path, rec: Reconstruction, ids, depths) -> None:
    """images/ (undistorted working-resolution JPEGs), depth/ (float32 depth + confidence), cameras.json."""
    import cv2

    paths = BundlePaths(root)
    paths.images.mkdir()
    paths.depth.mkdir()
    cams = []
    for c, im in zip(rec.cameras, rec.images):
        stem = Path(c.name).stem
        rel = paths.image_rel(stem)
        cv2.imwrite(str(root / rel), cv2.cvtColor(im, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cams.append(dataclasses.replace(c, image=rel, name=Path(rel).name))
    for i, d in zip(ids, depths):
        stem = Path(rec.cameras[i].name).stem
        write_depth(paths.depth_map(stem), d.depth, d.confidence, d.camera.K, (d.camera.width, d.camera.height))
    write_cameras(root, cams)
    rec.cameras = cams


def _write_exports(root: Path, rec: Reconstruction) -> None:
    from spatial.interop.colmap_io import write_colmap
    from spatial.interop.nerfstudio_io import write_transforms

    paths = BundlePaths(root)
    paths.colmap.mkdir(parents=True)
    write_colmap(paths.colmap, rec.cameras, rec.points, rec.colors)
    write_transforms(paths.transforms, rec.cameras, [c.image for c in rec.cameras])
