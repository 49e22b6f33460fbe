"""Write a synthetic capture: video, JPEG frames and exact ground truth (cameras, depth, mesh, marker).

Layout of the output directory:
  capture.mp4                 H.264 yuv420p, one video frame per rendered frame, at `fps`
  frames/000000.jpg ...       the same frames as JPEG
  ground_truth/cameras.json   {"version": 1, "frames": [Camera.to_json(), ...]}; `image` is relative to the
                              capture directory (frames/000000.jpg)
  ground_truth/depth/000000.npy  float32 z-depth in metres along the optical axis (OpenCV camera z), 0 = no hit
  ground_truth/mesh.ply       the scene mesh, metres, +Z up, face colours = mean material colours
  ground_truth/meta.json      marker size and world corners, table height, scene bounds, seed, fps, config
With --dynamic (objects move while the phone films; the mesh above is their rest pose, at time 0):
  ground_truth/moving/000000.png  uint8 per pixel: 0 = static surface (or nothing), k + 1 = moving part k
  ground_truth/motion.json    the parts' motions and, per frame, its normalised time and each part's 4x4
                              world-from-rest pose (frame i is at time i / (frames - 1))
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from spatial.bundle import read_cameras, swap_in, write_cameras
from spatial.cameras import Camera
from spatial.capture.synth.config import SynthConfig
from spatial.capture.synth.motion import normalised_time
from spatial.capture.synth.render import Tracer, finish, motion_blur, render_frame
from spatial.capture.synth.scene import ARUCO_DICT, ARUCO_ID, ROOM, TABLE_SIZE, build_scene, pose_scene
from spatial.capture.synth.textures import MATERIALS, make_noise
from spatial.capture.synth.trajectory import make_trajectory, phone_camera
from twin_kit import InputError

GENERATOR = "twin-synth"
GT_VERSION = 1
BLUR_TAPS = 5


def _check(cfg: SynthConfig) -> None:
    if cfg.frames < 1:
        raise InputError(f"frames must be at least 1, got {cfg.frames}")
    if cfg.width < 16 or cfg.height < 16 or cfg.width % 2 or cfg.height % 2:
        raise InputError(f"image size {cfg.width}x{cfg.height} must be even and at least 16x16 (yuv420p video)")
    if cfg.fps <= 0:
        raise InputError(f"fps must be positive, got {cfg.fps}")
    if not 10.0 <= cfg.hfov_deg <= 150.0:
        raise InputError(f"horizontal field of view {cfg.hfov_deg} deg is outside 10..150")
    if not 0.7 <= cfg.orbit_radius_m <= 1.6:
        raise InputError(f"orbit radius {cfg.orbit_radius_m} m must be within 0.7..1.6 m (table to walls)")
    if not 0.9 <= cfg.orbit_height_m <= 2.2:
        raise InputError(f"orbit height {cfg.orbit_height_m} m must be within 0.9..2.2 m (table to ceiling)")
    if not 0 <= cfg.arc_deg <= 360:
        raise InputError(f"orbit arc {cfg.arc_deg} deg must be within 0..360")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise InputError(f"jpeg quality must be within 1..100, got {cfg.jpeg_quality}")
    if cfg.exposure_s < 0 or cfg.noise < 0 or cfg.shake < 0 or cfg.exposure_drift < 0:
        raise InputError("exposure, noise, shake and exposure drift must not be negative")


def _prepare_out(out: Path, dynamic: bool = False) -> Path:
    """A fresh temporary sibling of `out`; refuses to later replace a directory that is not a synthetic capture."""
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{out}: exists and is not a directory")
        ours = (out / "ground_truth" / "meta.json").exists()
        if any(out.iterdir()) and not ours:
            raise InputError(f"{out}: directory is not empty and is not a synthetic capture; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "frames").mkdir(parents=True)
    (tmp / "ground_truth" / "depth").mkdir(parents=True)
    if dynamic:
        (tmp / "ground_truth" / "moving").mkdir()
    return tmp


class _VideoWriter:
    """H.264 (libx264, yuv420p) writer over PyAV."""

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int):
        import av

        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(crf), "preset": "medium"}
        self._av = av

    def write(self, rgb: np.ndarray) -> None:
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def _meta(cfg: SynthConfig, scene) -> dict:
    mk = scene.marker
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}
    return {
        "generator": GENERATOR, "version": GT_VERSION, "units": "metres", "up_axis": "+Z",
        "camera_convention": "opencv, world_to_camera, pixel centres at integer coordinates",
        "seed": cfg.seed, "fps": cfg.fps, "frames": cfg.frames, "width": cfg.width, "height": cfg.height,
        "hfov_deg": cfg.hfov_deg,
        "depth": {"kind": "z (OpenCV camera z, not ray length)", "units": "metres", "dtype": "float32",
                  "invalid": 0.0, "path": "ground_truth/depth/{index:06d}.npy"},
        "marker": {"dictionary": ARUCO_DICT, "id": ARUCO_ID, "size_m": mk.size, "paper_size_m": mk.paper,
                   "centre": mk.centre.tolist(), "normal": mk.normal.tolist(),
                   "corners_world": mk.corners().tolist(),
                   "corner_order": "top-left, top-right, bottom-right, bottom-left (as cv2.aruco reports them)"},
        "table": {"top_height_m": scene.table_top_z, "size_m": list(TABLE_SIZE),
                  "centre": scene.table_centre.tolist()},
        "scene": {"bounds": scene.bounds.tolist(), "room_size_m": list(ROOM), "light": scene.light.tolist(),
                  "materials": [m.name for m in MATERIALS], "faces": int(len(scene.mesh.faces))},
        "config": config,
        "dynamic": [m.name for m in scene.moving],
    }


def synthesize_capture(cfg: SynthConfig, out: Path | None = None,
                       on_frame: Callable[[int, float], None] | None = None) -> Path:
    """Render the capture described by `cfg` into `out` (default cfg.out) atomically; returns the directory.

    `on_frame(index, seconds)` is called after each frame, for progress bars.
    """
    _check(cfg)
    out = Path(out if out is not None else cfg.out)
    scene = build_scene(cfg.marker_size_m, dynamic=cfg.dynamic)
    tracer = Tracer.make(scene)
    field = make_noise(cfg.seed, len(MATERIALS), cfg.texture_scale)
    traj = make_trajectory(cfg.seed, cfg.frames, cfg.fps, cfg.orbit_radius_m, cfg.orbit_height_m, cfg.arc_deg,
                           cfg.shake, cfg.exposure_drift, scene.table_centre)
    tmp = _prepare_out(out, cfg.dynamic)
    try:
        video = _VideoWriter(tmp / "capture.mp4", cfg.width, cfg.height, cfg.fps, cfg.video_crf)
        cams: list[Camera] = []
        motion = []
        for i in range(cfg.frames):
            t0 = time.perf_counter()
            ts = i / cfg.fps
            if scene.moving:  # the moving parts where they are at this frame (no motion blur of their own)
                s = normalised_time(i, cfg.frames)
                tracer = Tracer.make(pose_scene(scene, s))
                motion.append({"name": f"{i:06d}", "time": s,
                               "poses": {m.name: m.matrix(s).tolist() for m in scene.moving}})
            R, t = traj.pose(ts)
            name = f"{i:06d}"
            cam = phone_camera(name, cfg.width, cfg.height, cfg.hfov_deg, R, t, ts, f"frames/{name}.jpg")
            r = render_frame(tracer, field, cam, shadows=cfg.shadows)
            colour = r.colour
            if cfg.exposure_s > 0:
                colour = motion_blur(colour, r.depth, cam, traj.pose(ts - cfg.exposure_s / 2),
                                     traj.pose(ts + cfg.exposure_s / 2), BLUR_TAPS, cfg.max_blur_px)
            rgb = finish(colour, traj.gain(ts), cfg.noise, np.random.default_rng([cfg.seed, 911, i]))
            cv2.imwrite(str(tmp / cam.image), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
            video.write(rgb)
            np.save(tmp / "ground_truth" / "depth" / f"{name}.npy", r.depth.astype(np.float32))
            if r.part is not None:
                cv2.imwrite(str(tmp / "ground_truth" / "moving" / f"{name}.png"), (r.part + 1).astype(np.uint8))
            cams.append(cam)
            if on_frame is not None:
                on_frame(i, time.perf_counter() - t0)
        video.close()
        gt = tmp / "ground_truth"
        write_cameras(gt, cams)
        scene.mesh.export(gt / "mesh.ply")
        (gt / "meta.json").write_text(json.dumps(_meta(cfg, scene), indent=1))
        if scene.moving:
            (gt / "motion.json").write_text(json.dumps(
                {"parts": [m.to_json() for m in scene.moving], "time": "normalised: frame i at i / (frames - 1)",
                 "pose": "4x4 world-from-rest (rest = time 0, as in mesh.ply)", "frames": motion}, indent=1))
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class GroundTruth:
    """A synthetic capture's ground truth, opened: cameras, marker, table, and loaders for depth and frames."""

    root: Path
    cameras: list[Camera]
    meta: dict
    mesh_path: Path
    video_path: Path
    marker_corners: np.ndarray  # (4, 3) world, cv2.aruco order (top-left, top-right, bottom-right, bottom-left)
    marker_size: float
    table_top_z: float

    def depth(self, i: int) -> np.ndarray:
        """z-depth (H, W) float32 of frame i in metres; 0 where no surface was hit."""
        return np.load(self.root / "ground_truth" / "depth" / f"{self.cameras[i].name}.npy")

    @property
    def dynamic(self) -> bool:
        return bool(self.meta.get("dynamic"))

    def moving_mask(self, i: int) -> np.ndarray:
        """(H, W) uint8 of frame i: 0 = static surface or nothing, k + 1 = moving part k (dynamic captures)."""
        p = self.root / "ground_truth" / "moving" / f"{self.cameras[i].name}.png"
        m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if m is None:
            raise InputError(f"{p}: no moving-part mask (not a dynamic capture?)")
        return m

    def motion(self) -> dict:
        """ground_truth/motion.json of a dynamic capture: the parts' motions and per-frame poses."""
        p = self.root / "ground_truth" / "motion.json"
        if not p.exists():
            raise InputError(f"{self.root}: not a dynamic capture (ground_truth/motion.json missing)")
        return json.loads(p.read_text())

    def image_path(self, i: int) -> Path:
        return self.root / self.cameras[i].image

    def image(self, i: int) -> np.ndarray:
        """Frame i as uint8 RGB (H, W, 3), read from its JPEG."""
        bgr = cv2.imread(str(self.image_path(i)), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"{self.image_path(i)}: missing or unreadable frame")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_ground_truth(out: Path | str) -> GroundTruth:
    """Open the ground truth of a capture written by `synthesize_capture`."""
    root = Path(out)
    gt = root / "ground_truth"
    if not (gt / "meta.json").exists():
        raise InputError(f"{root}: not a synthetic capture (ground_truth/meta.json missing)")
    try:
        meta = json.loads((gt / "meta.json").read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{gt / 'meta.json'}: damaged ({e.msg})") from None
    if meta.get("generator") != GENERATOR or meta.get("version") != GT_VERSION:
        raise InputError(f"{gt / 'meta.json'}: unknown ground-truth format {meta.get('generator')!r} "
                         f"version {meta.get('version')!r}")
    mk = meta["marker"]
    return GroundTruth(root=root, cameras=read_cameras(gt), meta=meta, mesh_path=gt / "mesh.ply",
                       video_path=root / "capture.mp4", marker_corners=np.asarray(mk["corners_world"]),
                       marker_size=float(mk["size_m"]), table_top_z=float(meta["table"]["top_height_m"]))
