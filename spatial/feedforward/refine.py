"""`--refine`: bundle adjustment (pycolmap) of the network's cameras on image tracks.

Tracks: corners in each frame's confident pixels are lifted to 3D with the network's depth, projected into the
next `span` frames with the network's cameras, and the projections refined on the images by pyramidal
Lucas-Kanade (seeded by the predicted flow, kept only when tracking back lands within `fb_error` px of the
corner). So the geometry proposes the match and the pixels decide it; a track is its corner's observations.

Adjustment: a real pycolmap Reconstruction (one PINHOLE camera per frame at network size, the tracks as 3D
points) goes through `pycolmap.bundle_adjustment`: first points only (the network's cameras held), to score
them and drop outlying observations, then cameras and points together. The refined world is mapped back onto
the network's: scaled so the tracks' depths agree with the network's depth maps, then moved rigidly onto the
points those depth maps gave them. The reported errors are
the mean reprojection errors over the same final observations: network cameras with their best points, and
refined cameras with theirs.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from spatial.feedforward.align import robust_sim3
from spatial.feedforward.chunked import Predictions

PIXEL_SHIFT = 0.5   # COLMAP puts the top-left pixel's centre at (0.5, 0.5); Twin at (0, 0)


@dataclass(frozen=True)
class RefineConfig:
    """Track and adjustment settings (pixels are network-image pixels)."""

    max_queries: int = 400         # corners per frame that start a track
    span: int = 6                  # later frames a track follows
    klt_window: int = 7            # small: a larger window spans surfaces the motion warps differently
    klt_levels: int = 3
    fb_error: float = 0.5          # forward-backward disagreement that rejects a match (px)
    floor_px: float = 2.0          # outlier cuts never go below this
    rounds: int = 2                # full adjustments, each followed by an outlier cut
    min_tracks: int = 20           # fewer and the network's cameras are kept
    edge_ratio: float = 1.1        # corners whose 5x5 depth window spans more than this ratio are skipped
    refine_focal: bool = False     # off: with short tracks focal length trades against depth and rotation


@dataclass
class Tracks:
    """Observations (frame, track, pixel), each track's current 3D point, and where the network's depth put it."""

    frame: np.ndarray   # (M,) int
    track: np.ndarray   # (M,) int, 0..T-1
    uv: np.ndarray      # (M, 2) float, Twin pixels (centres at integers)
    xyz: np.ndarray     # (T, 3)
    seed: np.ndarray    # (T, 3) the query pixel's depth unprojected with the network's camera

    def __len__(self) -> int:
        return len(self.xyz)

    def subset(self, keep: np.ndarray) -> Tracks:
        """The observations in `keep`, without tracks left with fewer than two; track ids renumbered."""
        counts = np.bincount(self.track[keep], minlength=len(self.xyz))
        keep = keep & (counts[self.track] >= 2)
        alive = np.flatnonzero(counts >= 2)
        new_id = np.full(len(self.xyz), -1)
        new_id[alive] = np.arange(len(alive))
        return Tracks(self.frame[keep], new_id[self.track[keep]], self.uv[keep], self.xyz[alive], self.seed[alive])


def _gray(images) -> list[np.ndarray]:
    """(S, 3, h, w) float tensor in [0, 1] -> uint8 grey images."""
    import cv2

    rgb = (images.permute(0, 2, 3, 1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
    return [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in rgb]


def _project(ext: np.ndarray, K: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cam = xyz @ ext[:, :3].T + ext[:, 3]
    z = cam[:, 2]
    uv = (cam[:, :2] / np.where(np.abs(z) > 1e-12, z, 1e-12)[:, None]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    return uv, z


def smooth_depth(depth: np.ndarray, ratio: float, radius: int = 2) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood has valid depth within `ratio` (max/min): not on an occlusion edge,
    where a corner is where two surfaces meet in the image and moves like neither of them."""
    import cv2

    k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    d = np.where(depth > 0, depth, np.inf).astype(np.float32)
    low = cv2.erode(d, k, borderType=cv2.BORDER_REPLICATE)
    high = cv2.dilate(np.where(np.isfinite(d), d, np.inf).astype(np.float32), k, borderType=cv2.BORDER_REPLICATE)
    return np.isfinite(high) & (low > 0) & (high <= ratio * low)


def build_tracks(images, pred: Predictions, cfg: RefineConfig = RefineConfig()) -> Tracks:
    """Tracks over the frames, from the network's geometry refined by Lucas-Kanade on the images."""
    import cv2

    gray = _gray(images)
    S = len(gray)
    h, w = gray[0].shape
    spacing = max(2, int(0.5 * np.sqrt(h * w / max(cfg.max_queries, 1))))
    lk = dict(winSize=(cfg.klt_window, cfg.klt_window), maxLevel=cfg.klt_levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
              flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    frames, tracks, uvs, xyzs = [], [], [], []
    base = 0
    for i in range(S - 1):
        mask = ((pred.rank[i] >= 0.5) & smooth_depth(pred.depth[i], cfg.edge_ratio)).astype(np.uint8) * 255
        corners = cv2.goodFeaturesToTrack(gray[i], cfg.max_queries, 0.005, spacing, mask=mask)
        if corners is None:
            continue
        q = corners.reshape(-1, 2).astype(np.float64)
        px = np.clip(np.round(q).astype(int), [0, 0], [w - 1, h - 1])
        X = pred.world_points(i)[px[:, 1], px[:, 0]]
        ids = base + np.arange(len(q))
        base += len(q)
        xyzs.append(X)
        frames.append(np.full(len(q), i))
        tracks.append(ids)
        uvs.append(q)
        for j in range(i + 1, min(S, i + 1 + cfg.span)):
            guess, z = _project(pred.extrinsics[j], pred.intrinsics[j], X)
            inside = (z > 0) & (guess[:, 0] >= 0) & (guess[:, 0] <= w - 1) & (guess[:, 1] >= 0) & (guess[:, 1] <= h - 1)
            if not inside.any():
                continue
            p0 = q[inside].astype(np.float32).reshape(-1, 1, 2)
            p1, ok1, _ = cv2.calcOpticalFlowPyrLK(gray[i], gray[j], p0, guess[inside].astype(np.float32)
                                                  .reshape(-1, 1, 2), **lk)
            back, ok2, _ = cv2.calcOpticalFlowPyrLK(gray[j], gray[i], p1, p0.copy(), **lk)
            fb = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
            p1 = p1.reshape(-1, 2)
            good = ((ok1.ravel() == 1) & (ok2.ravel() == 1) & (fb < cfg.fb_error)
                    & (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1))
            frames.append(np.full(int(good.sum()), j))
            tracks.append(ids[inside][good])
            uvs.append(p1[good].astype(np.float64))
    if not xyzs:
        return Tracks(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 2)), np.zeros((0, 3)), np.zeros((0, 3)))
    xyz = np.concatenate(xyzs)
    t = Tracks(np.concatenate(frames), np.concatenate(tracks), np.concatenate(uvs), xyz, xyz.copy())
    return t.subset(np.ones(len(t.frame), bool))


def reprojection_errors(ext: np.ndarray, K: np.ndarray, tracks: Tracks) -> np.ndarray:
    """(M,) pixel distance between each observation and its track point's projection (inf behind the camera)."""
    err = np.empty(len(tracks.frame))
    for f in np.unique(tracks.frame):
        m = tracks.frame == f
        uv, z = _project(ext[f], K[f], tracks.xyz[tracks.track[m]])
        e = np.linalg.norm(uv - tracks.uv[m], axis=1)
        err[m] = np.where(z > 0, e, np.inf)
    return err


@contextmanager
def _native_stderr_off():
    """COLMAP's bundle adjuster logs its banner through a glog that ignores pycolmap's log flags, straight to
    file descriptor 2; the adjustment's outcome is checked from its results, so the lines are dropped."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def adjust(ext: np.ndarray, K: np.ndarray, tracks: Tracks, size: tuple[int, int], cameras: bool, focal: bool
           ) -> tuple[np.ndarray, np.ndarray, Tracks]:
    """One pycolmap bundle adjustment of frames of `size` (width, height); returns (extrinsics, intrinsics,
    tracks with adjusted points). `cameras=False` holds every pose and intrinsic (points only)."""
    import pycolmap

    rec = pycolmap.Reconstruction()
    by_frame = {f: np.flatnonzero(tracks.frame == f) for f in range(len(ext))}
    point_index = {}
    for f in range(len(ext)):
        k = K[f]
        cam = pycolmap.Camera(model="PINHOLE", width=size[0], height=size[1], camera_id=f + 1,
                              params=[float(k[0, 0]), float(k[1, 1]), float(k[0, 2]) + PIXEL_SHIFT,
                                      float(k[1, 2]) + PIXEL_SHIFT])
        rec.add_camera_with_trivial_rig(cam)
        obs = by_frame[f]
        image = pycolmap.Image(name=f"{f:06d}", camera_id=f + 1, image_id=f + 1,
                               points2D=[pycolmap.Point2D(tracks.uv[m] + PIXEL_SHIFT) for m in obs])
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(np.asarray(ext[f], np.float64)))
        for local, m in enumerate(obs):
            point_index.setdefault(int(tracks.track[m]), []).append((f + 1, local))
    ids = {}
    grey = np.array([128, 128, 128], np.uint8)
    for t, elements in point_index.items():
        track = pycolmap.Track()
        for image_id, local in elements:
            track.add_element(image_id, local)
        ids[t] = rec.add_point3D(np.asarray(tracks.xyz[t], np.float64), track, grey)
    opts = pycolmap.BundleAdjustmentOptions()
    opts.print_summary = False
    opts.refine_principal_point = False
    opts.refine_extra_params = False
    opts.refine_focal_length = bool(cameras and focal)
    opts.refine_rig_from_world = bool(cameras)
    with _native_stderr_off():
        pycolmap.bundle_adjustment(rec, opts)
    ext2, K2 = ext.copy(), K.copy()
    for f in range(len(ext)):
        ext2[f] = np.asarray(rec.image(f + 1).cam_from_world().matrix())
        fx, fy = rec.camera(f + 1).params[:2]
        K2[f, 0, 0], K2[f, 1, 1] = fx, fy
    xyz = tracks.xyz.copy()
    for t, pid in ids.items():   # a point the adjuster dropped (e.g. behind a camera) scores as missing
        xyz[t] = rec.point3D(pid).xyz if rec.exists_point3D(pid) else np.nan
    return ext2, K2, Tracks(tracks.frame, tracks.track, tracks.uv, xyz, tracks.seed)


def _cut(err: np.ndarray, factor: float, floor: float) -> np.ndarray:
    finite = err[np.isfinite(err)]
    limit = max(floor, factor * float(np.median(finite))) if len(finite) else floor
    return err <= limit


def back_to_network(ext0: np.ndarray, ext: np.ndarray, tracks: Tracks) -> np.ndarray:
    """The similarity that maps the adjusted world onto the network's. Scale: the median ratio of each track's
    network depth to its adjusted depth in its first frame (so the cameras keep the depth maps' scale, whatever
    the poses were); then the rigid motion that best lays the scaled points onto the network's (robustly;
    points the adjuster dropped are NaN and left out)."""
    first = np.full(len(tracks), len(ext))
    np.minimum.at(first, tracks.track, tracks.frame)
    z_net = np.einsum("ti,ti->t", ext0[first, 2, :3], tracks.seed) + ext0[first, 2, 3]
    z_adj = np.einsum("ti,ti->t", ext[first, 2, :3], tracks.xyz) + ext[first, 2, 3]
    ok = np.isfinite(z_adj) & (z_adj > 0) & (z_net > 0)
    s = float(np.median(z_net[ok] / z_adj[ok]))
    fit = robust_sim3(s * tracks.xyz, tracks.seed, with_scale=False)
    return fit.S @ np.diag([s, s, s, 1.0])


def refine_predictions(images, pred: Predictions, cfg: RefineConfig = RefineConfig()
                       ) -> tuple[Predictions, dict]:
    """Bundle-adjusted cameras for `pred` (depth maps unchanged) and a report; the network's cameras are kept
    (and the report says why) when there are too few tracks or the adjustment does not lower the error."""
    from spatial.sfm.colmap_log import quiet_colmap

    quiet_colmap()
    ext0, K0 = pred.extrinsics, pred.intrinsics
    size = (int(images.shape[-1]), int(images.shape[-2]))
    tracks = build_tracks(images, pred, cfg)
    report = {"tracks_found": len(tracks), "observations_found": int(len(tracks.frame))}
    if len(tracks) < cfg.min_tracks:
        report["skipped"] = f"only {len(tracks)} tracks (need {cfg.min_tracks})"
        return pred, report
    # points only, under the network's cameras: then drop the observations that disagree with them
    _, _, tracks = adjust(ext0, K0, tracks, size, cameras=False, focal=False)
    tracks = tracks.subset(_cut(reprojection_errors(ext0, K0, tracks), 4.0, cfg.floor_px))
    focal = cfg.refine_focal
    ext, K = ext0, K0
    for _ in range(cfg.rounds):
        ext, K, moved = adjust(ext0, K0, tracks, size, cameras=True, focal=focal)
        keep = _cut(reprojection_errors(ext, K, moved), 3.0, cfg.floor_px)
        tracks = tracks.subset(keep)
    if len(tracks) < cfg.min_tracks:
        report["skipped"] = f"only {len(tracks)} tracks after outlier removal (need {cfg.min_tracks})"
        return pred, report
    # the same final observations scored under the network's cameras and under the refined ones
    _, _, held = adjust(ext0, K0, tracks, size, cameras=False, focal=False)
    ext, K, moved = adjust(ext0, K0, held, size, cameras=True, focal=focal)
    e0, e1 = reprojection_errors(ext0, K0, held), reprojection_errors(ext, K, moved)
    both = np.isfinite(e0) & np.isfinite(e1)
    if both.sum() < 2 * cfg.min_tracks:
        report["skipped"] = "the adjustment lost its points"
        return pred, report
    before, after = float(np.mean(e0[both])), float(np.mean(e1[both]))
    report.update({"tracks": len(tracks), "observations": int(len(tracks.frame)),
                   "reprojection_px_before": round(before, 4), "reprojection_px_after": round(after, 4),
                   "refined_focal": focal})
    if not after <= before:
        report["skipped"] = "the adjustment did not lower the reprojection error"
        return pred, report
    mapped = Predictions(ext, K, pred.depth, pred.confidence, pred.rank).transformed(
        back_to_network(ext0, ext, moved))
    out = Predictions(mapped.extrinsics, K, pred.depth, pred.confidence, pred.rank)
    return out, report
