"""Cameras from frames by COLMAP (pycolmap): SIFT, matching suited to the input, global or incremental mapping.

Ordered captures (video, or a long photo sequence) match each frame with its neighbours in time plus
loop-closure candidates found by Twin's own VLAD retrieval (COLMAP's would download a vocabulary tree);
small photo sets match exhaustively. Frames that fail are reported with the stage that lost them.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from spatial.cameras import Camera
from spatial.capture.frames import FrameSet
from spatial.interop.colmap_io import camera_from_pycolmap
from twin_kit import InputError, opt, warn


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
    num_threads: int = opt(2, "CPU threads for COLMAP")
    verbose: bool = opt(False, "show COLMAP's own log lines")
    seed: int = opt(0, "random seed for COLMAP's RANSAC and mappers")


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
    mapper: str = "global"
    matching: str = "sequential"
    timings: dict[str, float] = field(default_factory=dict)

    def sparse_depths(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(uv (K, 2) OpenCV pixels, depth (K,)) of the sparse points seen by camera `name`."""
        cam = next(c for c in self.cameras if c.name == name)
        X = self.points[self.visible[name]]
        xc = X @ cam.R.T + cam.t
        z = xc[:, 2]
        uv = xc[:, :2] / np.maximum(z[:, None], 1e-9) * [cam.fx, cam.fy] + [cam.cx, cam.cy]
        return uv, z


def run_sfm(frames: FrameSet, work_dir: Path, cfg: SfmConfig | None = None, progress=None) -> SfmResult:
    """Cameras and sparse points for the frames; InputError when too few of them can be registered."""
    import time

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
    db_path.unlink(missing_ok=True)
    names = [f"{i:05d}.png" for i in range(n)]
    pycolmap.set_random_seed(cfg.seed)
    task = progress.add_task("cameras", total=4, status="features") if progress is not None else None
    timings: dict[str, float] = {}

    def stage(status: str, t0: float, key: str) -> float:
        timings[key] = time.perf_counter() - t0
        if task is not None:
            progress.update(task, advance=1, status=status)
        return time.perf_counter()

    t = time.perf_counter()
    for name, f in zip(names, frames.frames):
        cv2.imwrite(str(img_dir / name), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    _extract(db_path, img_dir, names, frames, cfg)
    t = stage("matching", t, "features")

    matching = _choose_matching(frames, cfg)
    _match(db_path, work, names, matching, cfg)
    t = stage("mapping", t, "matching")

    feats, verified = _db_stats(db_path, names)
    need = max(3, int(np.ceil(cfg.min_registered * n)))
    rec = _largest(_map(db_path, img_dir, work / "sparse", cfg.mapper, cfg))
    mapper = cfg.mapper
    if cfg.mapper == "global" and (rec is None or rec.num_reg_images() < need) and max(verified.values()) > 0:
        warn(f"global mapping registered {rec.num_reg_images() if rec else 0} of {n} frames; "
             "trying the incremental mapper")
        rec2 = _largest(_map(db_path, img_dir, work / "sparse_incremental", "incremental", cfg))
        if rec2 is not None and (rec is None or rec2.num_reg_images() > rec.num_reg_images()):
            rec, mapper = rec2, "incremental"
    t = stage("done", t, "mapping")
    res = _result(rec, frames, names, feats, verified, mapper, cfg, matching)
    res.timings = timings
    if len(res.cameras) < need:
        raise InputError(f"images do not overlap enough: {len(res.cameras)} of {n} frames could be registered "
                         f"(need overlapping views of a textured scene)")
    if task is not None:
        progress.update(task, advance=1)
    return res


def _choose_matching(frames: FrameSet, cfg: SfmConfig) -> str:
    if cfg.matching != "auto":
        return cfg.matching
    if frames.source == "photos" and len(frames.frames) <= cfg.exhaustive_max_images:
        return "exhaustive"
    return "sequential"


def _extract(db_path: Path, img_dir: Path, names: list[str], frames: FrameSet, cfg: SfmConfig) -> None:
    """SIFT into the database, one shared camera for one device, focal priors from EXIF."""
    import pycolmap

    sizes = {f.size for f in frames.frames}
    focals = {round(f.focal_px, 1) if f.focal_px else None for f in frames.frames}
    single = len(sizes) == 1 and len(focals) == 1
    ro = pycolmap.ImageReaderOptions()
    ro.camera_model = cfg.camera_model
    eo = pycolmap.FeatureExtractionOptions()
    eo.num_threads = cfg.num_threads
    eo.sift.max_num_features = cfg.max_features
    eo.sift.first_octave = cfg.first_octave if cfg.first_octave is not None else (
        -1 if max(max(s) for s in sizes) <= 640 else 0)
    mode = pycolmap.CameraMode.SINGLE if single else pycolmap.CameraMode.PER_IMAGE
    pycolmap.extract_features(db_path, img_dir, image_names=names, camera_mode=mode, reader_options=ro,
                              extraction_options=eo, device=pycolmap.Device.cpu)
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
    mo.num_threads = cfg.num_threads
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


def _map(db_path: Path, img_dir: Path, out: Path, mapper: str, cfg: SfmConfig) -> list:
    import pycolmap

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if mapper == "global":
        o = pycolmap.GlobalPipelineOptions()
        o.num_threads = cfg.num_threads
        o.random_seed = cfg.seed
        o.mapper.num_threads = cfg.num_threads
        o.mapper.random_seed = cfg.seed
        o.mapper.global_positioning.use_gpu = False
        o.mapper.bundle_adjustment.ceres.use_gpu = False
        recs = pycolmap.global_mapping(db_path, img_dir, out, o)
    else:
        o = pycolmap.IncrementalPipelineOptions()
        o.num_threads = cfg.num_threads
        o.random_seed = cfg.seed
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
    unreg = {}
    got = set(idxs)
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
                     reconstruction=rec, unregistered=unreg, mapper=mapper, matching=matching)
