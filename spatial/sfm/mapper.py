"""Cameras from frames by COLMAP (pycolmap): SIFT, matching suited to the input, global or incremental mapping.

Ordered captures (video, or a long photo sequence) match each frame with its neighbours in time plus
loop-closure candidates found by Twin's own VLAD retrieval (COLMAP's would download a vocabulary tree);
small photo sets match exhaustively. Frames that fail are reported with the stage that lost them.
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from spatial.cameras import Camera
from spatial.capture.frames import FrameSet
from spatial.interop.colmap_io import camera_from_pycolmap
from spatial.sfm._intrinsics import camera_groups, implausible_cameras
from twin_kit import InputError, opt, warn


class TooFewRegistered(InputError):
    """Mapping registered too few of the frames: they do not overlap enough (or too few of them were given)."""


@dataclass
class SfmConfig:
    """Structure-from-motion settings (defaults measured on the bird capture, see benches/reconstruct.py)."""

    matching: Literal["auto", "sequential", "exhaustive"] = opt(
        "auto", "auto: exhaustive for photo sets up to exhaustive_max_images, else sequential + loop candidates")
    mapper: Literal["global", "incremental"] = opt("global", "COLMAP mapper: global (GLOMAP-style) or incremental")
    max_features: int = opt(4096, "most SIFT features per image")
    first_octave: int | None = opt(None, "SIFT first octave: -1 doubles the image first (more features, ~2x "
                                         "slower), 0 does not; default: -1 for images up to 640 px, else 0")
    overlap: int = opt(10, "sequential matching: neighbours on each side (plus quadratic overlap)")
    loop_candidates: int = opt(3, "sequential matching: retrieval candidates matched per image (0: none)")
    exhaustive_max_images: int = opt(40, "auto matching: photo sets up to this size are matched exhaustively")
    camera_model: Literal["SIMPLE_RADIAL", "SIMPLE_PINHOLE"] = opt("SIMPLE_RADIAL", "COLMAP camera model")
    min_features: int = opt(30, "a frame with fewer SIFT features is reported as 'too few features'")
    min_registered: float = opt(0.3, "fewer registered frames than this fraction is an error (images do not overlap)")
    num_threads: int = opt(2, "CPU threads for COLMAP's feature extraction and matching")
    deterministic: bool = opt(True, "map on one thread: COLMAP's threaded bundle adjustment sums in thread order, "
                                    "so two runs differ in the last digits (measured: no slower at 92 photos)")
    verbose: bool = opt(False, "show COLMAP's own log lines")
    seed: int = opt(0, "random seed for COLMAP's RANSAC and mappers")
    peak_threshold: float = opt(0.0067, "SIFT peak threshold (lower finds more features in low contrast)")
    guided_matching: bool = opt(False, "re-match each verified pair guided by its epipolar geometry (more inliers "
                                       "on wide baselines, slower)")
    retry_max_images: int = opt(40, "sets up to this size are re-mapped (incremental, more features, "
                                    "exhaustive matching) while any frame is missing; larger ones only when "
                                    "fewer than min_registered register")
    min_focal_ratio: float = opt(0.3, "a registered camera whose focal length is below this times its image's "
                                      "long side is implausible: its frame is dropped with a warning")
    max_focal_ratio: float = opt(5.0, "... or above this times the long side")
    max_focal_spread: float = opt(3.0, "... or this many times away from the other cameras' focal length (unless "
                                       "its EXIF focal agrees)")
    min_camera_points: int = opt(6, "... or when its pose rests on fewer sparse points than this")
    motion_masks: Literal["auto", "on", "off"] = opt(
        "auto", "keep features off moving parts (people, opened doors: flow the camera's motion cannot explain; "
                "see spatial.sfm.motion_masks): auto = for videos, whose frames are in capture order")


@dataclass
class SfmResult:
    """Registered cameras (frame order), sparse points and what happened to the other frames."""

    cameras: list[Camera]  # world-to-camera, intrinsics at working resolution, OpenCV pixel centres
    frame_indices: list[int]  # index into FrameSet.frames of each camera
    points: np.ndarray  # (P, 3) float64
    colors: np.ndarray  # (P, 3) uint8
    point_ids: np.ndarray  # (P,) COLMAP point3D ids, the order of `points`
    visible: dict[str, np.ndarray]  # camera name -> indices into `points` observed by that camera
    reconstruction: object  # the pycolmap.Reconstruction (image names are 00000.png ... in frame order)
    unregistered: dict[str, str] = field(default_factory=dict)  # frame name -> why it is missing
    moving: dict = field(default_factory=dict)  # motion masks: frames masked, mean and largest fraction
    mapper: str = "global"
    matching: str = "sequential"
    timings: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)  # frame name -> why its camera was not believable
    attempt: str = ""  # the mapping attempt that won (see run_sfm)
    attempts: list[dict] = field(default_factory=list)  # every attempt: {"attempt", "registered"}

    def sparse_depths(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(uv (K, 2) OpenCV pixels, depth (K,)) of the sparse points seen by camera `name`."""
        cam = next(c for c in self.cameras if c.name == name)
        X = self.points[self.visible[name]]
        xc = X @ cam.R.T + cam.t
        z = xc[:, 2]
        uv = xc[:, :2] / np.maximum(z[:, None], 1e-9) * [cam.fx, cam.fy] + [cam.cx, cam.cy]
        return uv, z


@dataclass
class _Attempt:
    """One mapping of one feature database, kept until the best attempt is chosen."""

    label: str
    mapper: str
    db_path: Path
    matching: str
    rec: object  # the largest pycolmap.Reconstruction, or None
    good: int = 0  # registered frames with believable cameras


def run_sfm(frames: FrameSet, work_dir: Path, cfg: SfmConfig | None = None, progress=None,
            masks: dict[str, np.ndarray] | None = None) -> SfmResult:
    """Cameras and sparse points for the frames; InputError when too few of them can be registered.

    `masks` (frame name -> bool (H, W), True = moving) keep SIFT off moving parts: COLMAP extracts no
    feature where a frame's mask is set, so nothing there is matched, triangulated or bundle-adjusted.

    When the configured mapping registers too few frames (see _too_few), it is retried on the same matches
    with the incremental mapper (relaxed initialisation, which wide-baseline photo sets need), then with
    more SIFT features, exhaustive matching and both mappers; the attempt with most believable cameras wins
    and SfmResult.attempt / .attempts say which it was.
    """
    import time

    from spatial.sfm.colmap_log import quiet_colmap

    quiet_colmap()  # before pycolmap runs: no glog files in the shared temp folder, no log lines on stderr
    import pycolmap

    cfg = cfg or SfmConfig()
    if not cfg.verbose:
        pycolmap.logging.minloglevel = 2  # COLMAP's INFO/WARNING lines would bury the progress bars and errors
    n = len(frames.frames)
    if n < 3:
        raise InputError(f"{n} frames: need at least 3 overlapping images")
    work = Path(work_dir)
    img_dir, db_path = work / "images", work / "database.db"
    shutil.rmtree(img_dir, ignore_errors=True)
    img_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{i:05d}.png" for i in range(n)]
    pycolmap.set_random_seed(cfg.seed)
    detect = masks is None and _wants_motion_masks(frames, cfg)
    task = (progress.add_task("cameras", total=4 + detect, status="motion masks" if detect else "features")
            if progress is not None else None)
    timings: dict[str, float] = {}

    def stage(status: str, t0: float, key: str) -> float:
        timings[key] = time.perf_counter() - t0
        if task is not None:
            progress.update(task, advance=1, status=status)
        return time.perf_counter()

    no_motion = (f"no camera motion: the {n} images show the scene from the same place (identical or nearly "
                 "identical views); move around the scene between photos")
    if _identical_views(frames):
        raise InputError(no_motion)
    t = time.perf_counter()
    for name, f in zip(names, frames.frames):
        cv2.imwrite(str(img_dir / name), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    moving = {}
    if detect:
        masks, moving = _detect_moving(frames)
        t = stage("features", t, "motion_masks")
    mask_dir = _write_masks(work / "masks", names, frames, masks)
    _extract(db_path, img_dir, names, frames, cfg, mask_dir)
    t = stage("matching", t, "features")

    matching = _choose_matching(frames, cfg)
    _match(db_path, work, names, matching, cfg)
    t = stage("mapping", t, "matching")
    if _features_never_move(db_path, frames):
        raise InputError(no_motion)

    need = max(3, int(np.ceil(cfg.min_registered * n)))
    attempts: list[_Attempt] = []

    def attempt(label: str, mapper: str, db: Path, how: str, relax: int) -> None:
        rec = _largest(_map(db, img_dir, work / f"sparse_{len(attempts)}", mapper, cfg, relax))
        attempts.append(_Attempt(label, mapper, db, how, rec, _believable(rec, frames, names, cfg)))

    attempt(cfg.mapper, cfg.mapper, db_path, matching, 0)
    if _too_few(attempts, n, need, cfg) and _any_verified(db_path, names):
        _retry(attempts, attempt, frames, work, img_dir, names, matching, n, need, cfg, mask_dir)
    best = max(attempts, key=lambda a: a.good)  # the first of equals: retries must do strictly better
    t = stage("done", t, "mapping")
    feats, verified = _db_stats(best.db_path, names)
    res = _result(best.rec, frames, names, feats, verified, best.mapper, cfg, best.matching)
    res.timings = timings
    res.moving = moving
    res.attempt = best.label
    res.attempts = [{"attempt": a.label, "registered": a.good} for a in attempts]
    if len(res.cameras) < need:
        raise TooFewRegistered(f"images do not overlap enough: {len(res.cameras)} of {n} frames could be "
                               f"registered (need overlapping views of a textured scene)")
    if task is not None:
        progress.update(task, advance=1)
    return res


def _wants_motion_masks(frames: FrameSet, cfg: SfmConfig) -> bool:
    """Masks need frames in capture order (neighbours in time): videos by default, any sequence with 'on'."""
    return cfg.motion_masks == "on" or (cfg.motion_masks == "auto" and frames.source == "video")


def _detect_moving(frames: FrameSet) -> tuple[dict[str, np.ndarray], dict]:
    """Motion masks of the frames (by name) and a summary for the report."""
    from spatial.sfm.motion_masks import motion_masks

    mm = motion_masks([f.image for f in frames.frames])
    names = [f.name for f in frames.frames]
    masked = [f for f in mm.fractions if f > 0]
    summary = {"frames_masked": len(masked), "mean_fraction": round(float(np.mean(masked)), 4) if masked else 0.0,
               "max_fraction": round(max(masked), 4) if masked else 0.0,
               "left_unmasked": [names[i] for i in mm.rejected]}
    return mm.by_name(names), summary


def _too_few(attempts: list[_Attempt], n: int, need: int, cfg: SfmConfig) -> bool:
    """Worth another attempt: below the refusal line, or (small photo sets, cheap to redo) any frame missing."""
    got = max(a.good for a in attempts)
    return got < need or (got < n and n <= cfg.retry_max_images)


def _retry(attempts, attempt, frames: FrameSet, work: Path, img_dir: Path, names: list[str], matching: str,
           n: int, need: int, cfg: SfmConfig, mask_dir: Path | None) -> None:
    """Retries in order of cost (one warning line), stopping as soon as enough frames are registered."""
    how = "exhaustive" if n <= cfg.retry_max_images else matching
    warn(f"{attempts[0].label} mapping registered {attempts[0].good} of {n} frames; retrying with the incremental "
         f"mapper, then with more features and guided {how} matching")
    db_path = attempts[0].db_path
    for label, relax in (("incremental", 0), ("incremental (relaxed initialisation)", 1)):
        if label == attempts[0].label:
            continue
        attempt(label, "incremental", db_path, matching, relax)
        if not _too_few(attempts, n, need, cfg):
            return
    more = dataclasses.replace(cfg, max_features=2 * cfg.max_features, first_octave=-1,
                               peak_threshold=cfg.peak_threshold / 2, guided_matching=True)
    db2 = work / "database_more.db"
    _extract(db2, img_dir, names, frames, more, mask_dir)
    _match(db2, work, names, how, more)
    for mapper, relax in (("global", 0), ("incremental", 1), ("incremental", 2)):
        kind = mapper + (" (relaxed initialisation)" if relax == 1 else " (most relaxed)" if relax else "")
        attempt(f"{kind}, more features, guided {how} matching", mapper, db2, how, relax)
        if not _too_few(attempts, n, need, cfg):
            return


def _believable(rec, frames: FrameSet, names: list[str], cfg: SfmConfig) -> int:
    """Registered frames of a reconstruction whose cameras pass the plausibility checks."""
    if rec is None:
        return 0
    idx = {nm: k for k, nm in enumerate(names)}
    cams, fr, obs = [], [], []
    for im in rec.images.values():
        if im.has_pose and im.name in idx:
            cams.append(camera_from_pycolmap(im.camera, im.cam_from_world(), im.name))
            fr.append(frames.frames[idx[im.name]])
            obs.append(im.num_points3D)
    return len(cams) - len(_implausible(cams, fr, obs, cfg))


def _implausible(cams, frames: list, observations: list[int], cfg: SfmConfig) -> dict[str, str]:
    return implausible_cameras(cams, frames, observations, cfg.min_focal_ratio, cfg.max_focal_ratio,
                               cfg.max_focal_spread, cfg.min_camera_points)


def _any_verified(db_path: Path, names: list[str]) -> bool:
    return max(_db_stats(db_path, names)[1].values()) > 0


def _identical_views(frames: FrameSet) -> bool:
    """Every frame looks the same as the next (32x32 grey thumbnails within re-encoding noise)."""
    thumbs = [cv2.resize(cv2.cvtColor(f.image, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
              .astype(np.float32) for f in frames.frames]
    return max(float(np.mean(np.abs(a - b))) for a, b in zip(thumbs, thumbs[1:])) < 2.0


def _features_never_move(db_path: Path, frames: FrameSet) -> bool:
    """No verified pair's matched features move by more than 0.5 % of the image diagonal (zero baseline)."""
    import pycolmap

    db = pycolmap.Database.open(db_path)
    try:
        kps = {im.image_id: np.asarray(db.read_keypoints(im.image_id))[:, :2] for im in db.read_all_images()}
        pair_ids, geoms = db.read_two_view_geometries()
        flows = []
        for pid, g in zip(pair_ids, geoms):
            a, b = pycolmap.pair_id_to_image_pair(pid)
            m = np.asarray(g.inlier_matches)
            if len(m) < 15 or a not in kps or b not in kps:
                continue
            flows.append(float(np.median(np.linalg.norm(kps[a][m[:, 0]] - kps[b][m[:, 1]], axis=1))))
    finally:
        db.close()
    diag = float(np.hypot(*frames.frames[0].size))
    return bool(flows) and max(flows) < 0.005 * diag


def _choose_matching(frames: FrameSet, cfg: SfmConfig) -> str:
    if cfg.matching != "auto":
        return cfg.matching
    if frames.source == "photos" and len(frames.frames) <= cfg.exhaustive_max_images:
        return "exhaustive"
    return "sequential"


def _write_masks(mask_dir: Path, names: list[str], frames: FrameSet, masks: dict[str, np.ndarray] | None
                 ) -> Path | None:
    """COLMAP's mask files (IMAGE_NAME.png, black = no features), or None when no frame has a mask."""
    shutil.rmtree(mask_dir, ignore_errors=True)
    if not masks or not any(m.any() for m in masks.values()):
        return None
    mask_dir.mkdir(parents=True)
    for name, f in zip(names, frames.frames):  # every frame needs a file: COLMAP skips a frame without one
        m = masks.get(f.name)
        if m is None:
            m = np.zeros(f.image.shape[:2], bool)
        if m.shape != f.image.shape[:2]:
            raise ValueError(f"mask of {f.name} is {m.shape}, its frame {f.image.shape[:2]}")
        cv2.imwrite(str(mask_dir / f"{name}.png"), np.where(m, 0, 255).astype(np.uint8))
    return mask_dir


def _extract(db_path: Path, img_dir: Path, names: list[str], frames: FrameSet, cfg: SfmConfig,
             mask_dir: Path | None = None) -> None:
    """SIFT into the database: one camera per camera group (see camera_groups), focal priors from EXIF.

    Images enter the database group by group in name order before extraction, so image ids never depend on
    which extraction thread finishes first (COLMAP's parallel reader would otherwise number them by race,
    and matching and mapping results follow the ids).
    """
    import pycolmap

    sizes = {f.size for f in frames.frames}
    ro = pycolmap.ImageReaderOptions()
    ro.camera_model = cfg.camera_model
    if mask_dir is not None:
        ro.mask_path = mask_dir  # frames without a file there are not masked
    db_path.unlink(missing_ok=True)
    pycolmap.Database.open(db_path).close()
    groups = camera_groups(frames)
    for g in groups:
        pycolmap.import_images(db_path, img_dir, pycolmap.CameraMode.SINGLE, [names[i] for i in g], ro)
    eo = pycolmap.FeatureExtractionOptions()
    eo.num_threads = cfg.num_threads
    eo.sift.max_num_features = cfg.max_features
    eo.sift.peak_threshold = cfg.peak_threshold
    eo.sift.first_octave = cfg.first_octave if cfg.first_octave is not None else (
        -1 if max(max(s) for s in sizes) <= 640 else 0)
    pycolmap.extract_features(db_path, img_dir, image_names=names, camera_mode=pycolmap.CameraMode.PER_IMAGE,
                              reader_options=ro, extraction_options=eo, device=pycolmap.Device.cpu)
    if not any(f.focal_px for f in frames.frames):
        return
    db = pycolmap.Database.open(db_path)
    try:
        by_name = dict(zip(names, frames.frames))
        done = set()
        for im in db.read_all_images():
            f = by_name.get(im.name)
            if f is None or not f.focal_px or im.camera_id in done:
                continue
            cam = db.read_camera(im.camera_id)
            p = np.asarray(cam.params, np.float64).copy()
            p[list(cam.focal_length_idxs())] = f.focal_px
            cam.params = p
            cam.has_prior_focal_length = True
            db.update_camera(cam)
            done.add(im.camera_id)
    finally:
        db.close()


def _match(db_path: Path, work: Path, names: list[str], matching: str, cfg: SfmConfig) -> None:
    import pycolmap

    mo = pycolmap.FeatureMatchingOptions()
    # Sequential and pair-list matching store matches as threads finish them, and the mapper's tie-breaks follow
    # that order: one thread keeps runs identical (seen: 1 in 4 suite runs differed with 2 threads).
    mo.num_threads = 1 if cfg.deterministic and matching != "exhaustive" else cfg.num_threads
    mo.guided_matching = cfg.guided_matching
    vo = pycolmap.TwoViewGeometryOptions()
    vo.ransac.random_seed = cfg.seed
    if matching == "exhaustive":
        pycolmap.match_exhaustive(db_path, matching_options=mo, verification_options=vo, device=pycolmap.Device.cpu)
        return
    po = pycolmap.SequentialPairingOptions()
    po.overlap = cfg.overlap
    po.quadratic_overlap = True
    po.loop_detection = False  # COLMAP's loop detection needs a downloaded vocabulary tree
    pycolmap.match_sequential(db_path, matching_options=mo, pairing_options=po, verification_options=vo,
                              device=pycolmap.Device.cpu)
    pairs = _loop_pairs(db_path, names, cfg)
    if pairs:
        path = work / "loop_pairs.txt"
        path.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in pairs))
        io = pycolmap.ImportedPairingOptions()
        io.match_list_path = path
        pycolmap.match_image_pairs(db_path, matching_options=mo, pairing_options=io, verification_options=vo,
                                   device=pycolmap.Device.cpu)


def _sequential_set(n: int, overlap: int) -> set[tuple[int, int]]:
    """The pairs COLMAP's sequential matcher with quadratic overlap already tried."""
    out = set()
    for i in range(n):
        for k in range(1, overlap + 1):
            for j in (i + k, i + 2 ** (k - 1)):
                if j < n and j != i:
                    out.add((i, j))
    return out


def _loop_pairs(db_path: Path, names: list[str], cfg: SfmConfig) -> list[tuple[int, int]]:
    """Retrieval candidates (VLAD of the images' own SIFT) not already matched sequentially."""
    import pycolmap

    from spatial.sfm._retrieval import retrieval_pairs, vlad

    if cfg.loop_candidates <= 0:
        return []
    db = pycolmap.Database.open(db_path)
    try:
        ids = {im.name: im.image_id for im in db.read_all_images()}
        desc = [np.asarray(db.read_descriptors(ids[nm]).data) if nm in ids else np.zeros((0, 128), np.uint8)
                for nm in names]
    finally:
        db.close()
    rng = np.random.default_rng(cfg.seed)
    desc = [d[rng.choice(len(d), 300, replace=False)] if len(d) > 300 else d for d in desc]  # speed
    pairs = retrieval_pairs(vlad(desc, seed=cfg.seed), cfg.loop_candidates, min_index_gap=cfg.overlap)
    seen = _sequential_set(len(names), cfg.overlap)
    return [p for p in pairs if p not in seen]


def _db_stats(db_path: Path, names: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Per image name: SIFT feature count, and number of geometrically verified partner images."""
    import pycolmap

    db = pycolmap.Database.open(db_path)
    try:
        ims = db.read_all_images()
        id2name = {im.image_id: im.name for im in ims}
        feats = {im.name: db.num_keypoints_for_image(im.image_id) for im in ims}
        verified = {nm: 0 for nm in names}
        pair_ids, inliers = db.read_two_view_geometry_num_inliers()
        for pid, k in zip(pair_ids, inliers):
            if k >= 15:
                a, b = pycolmap.pair_id_to_image_pair(pid)
                for i in (a, b):
                    if i in id2name:
                        verified[id2name[i]] += 1
    finally:
        db.close()
    return feats, verified


def _largest(recs: list):
    return max(recs, key=lambda r: r.num_reg_images()) if recs else None


def _map(db_path: Path, img_dir: Path, out: Path, mapper: str, cfg: SfmConfig, relax: int = 0) -> list:
    """Reconstructions by COLMAP's global or incremental mapper; `relax` 1 or 2 lowers the incremental
    mapper's bar for its first pair and for adding views (wide baselines give few, strong matches)."""
    import pycolmap

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    threads = 1 if cfg.deterministic else cfg.num_threads
    if mapper == "global":
        o = pycolmap.GlobalPipelineOptions()
        o.num_threads = threads
        o.random_seed = cfg.seed
        o.mapper.num_threads = threads
        o.mapper.random_seed = cfg.seed
        o.mapper.global_positioning.use_gpu = False
        o.mapper.bundle_adjustment.ceres.use_gpu = False
        recs = pycolmap.global_mapping(db_path, img_dir, out, o)
    else:
        o = pycolmap.IncrementalPipelineOptions()
        o.num_threads = threads
        o.random_seed = cfg.seed
        o.min_model_size = 3  # the largest model is kept anyway; COLMAP's 10 discards small photo sets whole
        m = o.mapper
        if relax >= 1:
            m.init_min_num_inliers, m.init_min_tri_angle = 30, 6.0
            m.abs_pose_min_num_inliers, m.abs_pose_min_inlier_ratio = 15, 0.15
        if relax >= 2:
            m.init_min_num_inliers, m.init_min_tri_angle = 15, 3.0
            m.abs_pose_min_num_inliers, m.abs_pose_min_inlier_ratio = 10, 0.1
            o.min_num_matches = 10
        recs = pycolmap.incremental_mapping(db_path, img_dir, out, o)
    return list(recs.values())


def _result(rec, frames: FrameSet, names: list[str], feats: dict, verified: dict, mapper: str, cfg: SfmConfig,
            matching: str) -> SfmResult:
    """Twin cameras (frame names) and points from the largest reconstruction; reasons for the rest."""
    cams, idxs, visible = [], [], {}
    pts = np.zeros((0, 3))
    cols = np.zeros((0, 3), np.uint8)
    pids = np.zeros(0, np.int64)
    if rec is not None:
        pids = np.array(sorted(rec.points3D), np.int64)
        pts = np.array([rec.points3D[i].xyz for i in pids], np.float64).reshape(-1, 3)
        cols = np.array([rec.points3D[i].color for i in pids], np.uint8).reshape(-1, 3)
        row = {int(p): k for k, p in enumerate(pids)}
        by_name = {im.name: im for im in rec.images.values() if im.has_pose}
        for k, nm in enumerate(names):
            im = by_name.get(nm)
            if im is None:
                continue
            f = frames.frames[k]
            c = camera_from_pycolmap(im.camera, im.cam_from_world(), f.name)
            c.image, c.timestamp = None, f.timestamp
            cams.append(c)
            idxs.append(k)
            seen = [row[int(p.point3D_id)] for p in im.points2D if p.has_point3D()]
            visible[f.name] = np.unique(np.asarray(seen, np.int64))
    dropped = _implausible(cams, [frames.frames[k] for k in idxs], [len(visible[c.name]) for c in cams], cfg)
    for name, why in dropped.items():
        warn(f"dropping {name}: {why}")
    keep = [i for i, c in enumerate(cams) if c.name not in dropped]
    cams, idxs = [cams[i] for i in keep], [idxs[i] for i in keep]
    visible = {c.name: visible[c.name] for c in cams}
    unreg = dict(dropped)
    got = set(idxs) | {k for k, f in enumerate(frames.frames) if f.name in dropped}
    for k, nm in enumerate(names):
        if k in got:
            continue
        fname = frames.frames[k].name
        if feats.get(nm, 0) < cfg.min_features:
            unreg[fname] = f"too few features ({feats.get(nm, 0)} SIFT keypoints)"
        elif verified.get(nm, 0) == 0:
            unreg[fname] = "no verified matches with any other frame"
        else:
            unreg[fname] = f"not registered by the {mapper} mapper ({verified[nm]} verified partner frames)"
    return SfmResult(cameras=cams, frame_indices=idxs, points=pts, colors=cols, point_ids=pids, visible=visible,
                     reconstruction=rec, unregistered=unreg, mapper=mapper, matching=matching, dropped=dropped)
