"""Dense multi-view depth on the CPU: PyTorch plane sweep per view, then cross-view consistency filtering.

pycolmap's PatchMatch stereo needs CUDA, so Twin has its own: for every reference view choose a few source
views, sweep fronto-parallel planes (uniform in inverse depth between a near/far taken from the sparse
points), score with ZNCC (robust to exposure changes), keep the best sources per pixel (occlusion), pick the
best plane with sub-plane refinement, then keep only depths that neighbouring views agree with.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from spatial.cameras import Camera
from spatial.dense._mvs_cost import SweepParams, box, sweep_depth
from twin_kit import InputError, opt, torch_threads


@dataclass
class DepthConfig:
    """Dense depth settings; defaults target ~1 s per 320x240 view on two CPU cores."""

    max_side: int = opt(320, "working resolution: longest image side in pixels (depth maps come out at this size)")
    num_planes: int = opt(64, "depth planes swept per view at half resolution, uniform in inverse depth")
    fine_planes: int = opt(8, "per-pixel hypotheses of the full-resolution refinement; 0 = one full-resolution sweep")
    fine_range: float = opt(1.5, "the refinement spans +- this many coarse plane steps")
    num_sources: int = opt(5, "source views matched against each reference view")
    best_k: int = opt(3, "per pixel and plane, average the k lowest source costs (tolerates occlusion)")
    window: int = opt(7, "ZNCC window side in pixels (odd)")
    smooth_radius: int = opt(4, "radius of the guided filter that smooths each cost slice; 0 = off")
    temperature: float = opt(0.05, "softmax temperature turning costs into the confidence probability")
    near_far_percentiles: tuple[float, float] = opt((2.0, 98.0), "percentiles of sparse-point depths giving near/far")
    depth_margin: float = opt(0.25, "relative margin added below near and above far")
    min_points: int = opt(20, "sparse points a view needs to take its depth range from them (else geometry)")
    near: float | None = opt(None, "fixed near depth for every view (overrides sparse points)")
    far: float | None = opt(None, "fixed far depth for every view (overrides sparse points)")
    target_angle_deg: float = opt(8.0, "preferred triangulation angle when scoring source views")
    min_angle_deg: float = opt(1.0, "source views whose median triangulation angle is below this are avoided")
    max_cost: float = opt(0.5, "invalidate pixels whose best aggregated cost (1 - ZNCC) is above this")
    min_confidence: float = opt(0.1, "invalidate pixels whose confidence is below this")
    min_texture: float = opt(0.01, "invalidate pixels whose reference window grey std is below this (flat areas)")
    consistent_views: int = opt(2, "views that must agree with a depth for it to survive the consistency filter")
    consistency_px: float = opt(1.5, "max forward-backward reprojection error in pixels for agreement")
    consistency_rel: float = opt(0.02, "max relative depth difference for agreement")
    consistency_average: bool = opt(True, "replace surviving depths by the mean over agreeing views")
    plane_chunk: int = opt(16, "planes processed at once (bounds memory)")
    threads: int = opt(0, "torch CPU threads while sweeping; 0 = keep torch's setting (one per physical core)")


@dataclass
class DepthResult:
    """One view's depth at the working resolution.

    depth: float32 (H, W) z-depth along the camera axis, 0 = invalid; confidence: float32 (H, W) in [0, 1],
    the cost volume's probability of the chosen depth scaled by the fraction of source views agreeing with it
    (0 where invalid); camera: the view's camera scaled to (W, H); sources: indices of the source views used;
    seconds: time taken for this view.
    """

    depth: np.ndarray
    confidence: np.ndarray
    camera: Camera
    sources: list[int] = field(default_factory=list)
    seconds: float = 0.0


def _check_inputs(images, cameras, sparse_points) -> np.ndarray | None:
    if len(images) != len(cameras):
        raise InputError(f"{len(images)} images but {len(cameras)} cameras")
    if len(images) < 2:
        raise InputError(f"dense depth needs at least 2 views, got {len(images)}")
    for im, cam in zip(images, cameras):
        im = np.asarray(im)
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise InputError(f"{cam.name}: image must be HxWx3 uint8, got {im.dtype} {im.shape}")
        if im.shape[:2] != (cam.height, cam.width):
            raise InputError(f"{cam.name}: image is {im.shape[1]}x{im.shape[0]}, camera says {cam.width}x{cam.height}")
        vals = np.array([cam.fx, cam.fy, cam.cx, cam.cy, *np.ravel(cam.R), *np.ravel(cam.t)], dtype=np.float64)
        if not np.isfinite(vals).all() or cam.fx <= 0 or cam.fy <= 0:
            raise InputError(f"{cam.name}: camera has non-finite or non-positive parameters")
        if any(abs(float(d)) > 1e-9 for d in cam.dist):
            raise InputError(f"{cam.name}: images must be undistorted before dense depth")
    if sparse_points is None:
        return None
    pts = np.asarray(sparse_points, dtype=np.float64).reshape(-1, 3) if np.size(sparse_points) else np.zeros((0, 3))
    if not np.isfinite(pts).all():
        raise InputError("sparse points contain NaN or infinite values")
    return pts


def _grey(img: np.ndarray, cam: Camera) -> torch.Tensor:
    """Working-resolution grey image in [0, 1] as a float32 tensor."""
    if (img.shape[1], img.shape[0]) != (cam.width, cam.height):
        img = cv2.resize(img, (cam.width, cam.height), interpolation=cv2.INTER_AREA)
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return torch.from_numpy(g)


def working_cameras(cameras: list[Camera], max_side: int) -> list[Camera]:
    """Each camera scaled so that its longest side is at most max_side."""
    return [c.scaled(min(1.0, max_side / max(c.width, c.height))) for c in cameras]


def _project(cam: Camera, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, z) of world points X (N, 3) in cam."""
    Xc = X @ cam.R.T + cam.t
    z = Xc[:, 2]
    zs = np.where(np.abs(z) > 1e-12, z, 1e-12)
    return cam.fx * Xc[:, 0] / zs + cam.cx, cam.fy * Xc[:, 1] / zs + cam.cy, z


def _visible(cam: Camera, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of points in front of cam and inside its image, their z)."""
    u, v, z = _project(cam, X)
    m = (z > 0) & (u >= -0.5) & (u <= cam.width - 0.5) & (v >= -0.5) & (v <= cam.height - 0.5)
    return m, z


def _geometric_mid_depth(cameras: list[Camera], r: int) -> float:
    """Typical scene depth for view r from camera geometry alone: where its optical axis passes closest to
    the other views' axes (median), else ten times the median spacing of neighbouring cameras."""
    cr, zr = cameras[r].center, cameras[r].R[2]
    ds = []
    for j, c in enumerate(cameras):
        if j == r:
            continue
        cs, zs = c.center, c.R[2]
        b = float(zr @ zs)
        if 1 - b * b < np.sin(np.radians(2.0)) ** 2:
            continue
        w = cr - cs
        d, e = float(zr @ w), float(zs @ w)
        s = (b * e - d) / (1 - b * b)
        t = (e - b * d) / (1 - b * b)
        if s > 0 and t > 0:
            ds.append(s)
    if ds:
        return float(np.median(ds))
    centres = np.array([c.center for c in cameras])
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(len(cameras)) * 1e18
    spacing = float(np.median(gaps.min(1)))
    return 10.0 * spacing if spacing > 0 else 1.0


def depth_range(cam: Camera, points: np.ndarray | None, cameras: list[Camera], r: int, cfg: DepthConfig
                ) -> tuple[float, float]:
    """(near, far) for view r: percentiles of visible sparse points with a margin, else from geometry."""
    near = far = None
    if points is not None and len(points):
        m, z = _visible(cam, points)
        if m.sum() >= cfg.min_points:
            lo, hi = np.percentile(z[m], cfg.near_far_percentiles)
            near, far = lo * (1 - cfg.depth_margin), hi * (1 + cfg.depth_margin)
    if near is None:
        mid = _geometric_mid_depth(cameras, r)
        near, far = mid / 4.0, mid * 4.0
    near = cfg.near if cfg.near is not None else near
    far = cfg.far if cfg.far is not None else far
    near = max(float(near), 1e-6)
    far = max(float(far), near * 1.05)
    return near, far


def _probe_points(cameras: list[Camera], r: int, cfg: DepthConfig, points: np.ndarray | None,
                  ranges: list[tuple[float, float]], max_points: int = 2000) -> np.ndarray:
    """World points seen by view r used to score its source views: sparse points, else a pixel grid
    back-projected at the middle of its depth range."""
    cam = cameras[r]
    if points is not None and len(points):
        m, _ = _visible(cam, points)
        P = points[m]
        if len(P) >= cfg.min_points:
            if len(P) > max_points:
                P = P[np.random.default_rng(r).choice(len(P), max_points, replace=False)]
            return P
    near, far = ranges[r]
    mid = 2.0 / (1.0 / near + 1.0 / far)
    v, u = np.mgrid[0.1:0.9:12j, 0.1:0.9:16j]
    rays = np.stack([(u.ravel() * cam.width - cam.cx) / cam.fx, (v.ravel() * cam.height - cam.cy) / cam.fy,
                     np.ones(u.size)], 1)
    return (rays * mid - cam.t) @ cam.R


def select_sources(cameras: list[Camera], cfg: DepthConfig, points: np.ndarray | None,
                   ranges: list[tuple[float, float]]) -> list[list[int]]:
    """For each view, the cfg.num_sources other views with the best overlap-weighted triangulation angles.

    Score (as in MVSNet's view selection): sum over points co-visible in both views of a bump around the
    target angle, wider above it than below; views with a tiny median angle (no parallax) go last.
    """
    n = len(cameras)
    centres = np.array([c.center for c in cameras])
    out = []
    for r in range(n):
        P = _probe_points(cameras, r, cfg, points, ranges)
        ray_r = centres[r] - P
        ray_r /= np.linalg.norm(ray_r, axis=1, keepdims=True) + 1e-12
        scores = np.full(n, -np.inf)
        for s in range(n):
            if s == r:
                continue
            m, _ = _visible(cameras[s], P)
            if not m.any():
                continue
            ray_s = centres[s] - P[m]
            ray_s /= np.linalg.norm(ray_s, axis=1, keepdims=True) + 1e-12
            ang = np.degrees(np.arccos(np.clip((ray_r[m] * ray_s).sum(1), -1, 1)))
            t = cfg.target_angle_deg
            sigma = np.where(ang <= t, 1.0 + t / 4, 10.0)
            score = float(np.exp(-((ang - t) ** 2) / (2 * sigma ** 2)).sum()) / len(P)
            if np.median(ang) < cfg.min_angle_deg:
                score -= 1.0  # parallax too small to triangulate: use only if nothing else overlaps
            scores[s] = score
        order = [int(s) for s in np.argsort(-scores) if np.isfinite(scores[s])]
        out.append(order[:cfg.num_sources])
    return out


def _backproject(cam: Camera, depth: np.ndarray) -> np.ndarray:
    """World points (H*W, 3) of a depth map in cam (invalid pixels give the camera centre)."""
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d = depth.astype(np.float64).ravel()
    Xc = np.stack([(u.ravel() - cam.cx) / cam.fx * d, (v.ravel() - cam.cy) / cam.fy * d, d], 1)
    return (Xc - cam.t) @ cam.R


def consistency_filter(depths: list[np.ndarray], cameras: list[Camera], sources: list[list[int]],
                       cfg: DepthConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Keep depths that at least cfg.consistent_views source views agree with (forward-backward check).

    A reference pixel is carried to a source view by its depth, the source's depth there (nearest pixel) is
    carried back, and the two agree when the round trip lands within consistency_px pixels and the depths
    differ by less than consistency_rel. Returns (filtered depths, fraction of sources agreeing per pixel).
    """
    out, agree_frac = [], []
    for r, (D, cam) in enumerate(zip(depths, cameras)):
        H, W = D.shape
        valid = D.ravel() > 0
        X = _backproject(cam, D)
        v0, u0 = np.mgrid[0:H, 0:W]
        u0, v0 = u0.ravel().astype(np.float64), v0.ravel().astype(np.float64)
        count = np.zeros(H * W, np.int32)
        zsum = D.ravel().astype(np.float64).copy()
        for s in sources[r]:
            Ds, cs = depths[s], cameras[s]
            u, v, z = _project(cs, X)
            ui, vi = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
            ok = valid & (z > 0) & (ui >= 0) & (ui < cs.width) & (vi >= 0) & (vi < cs.height)
            ds = np.zeros(H * W)
            ds[ok] = Ds[vi[ok], ui[ok]]
            ok &= ds > 0
            Xs = np.stack([(ui - cs.cx) / cs.fx * ds, (vi - cs.cy) / cs.fy * ds, ds], 1)
            Xw = (Xs - cs.t) @ cs.R
            ub, vb, zb = _project(cam, Xw)
            err_px = np.hypot(ub - u0, vb - v0)
            rel = np.abs(zb - D.ravel()) / np.maximum(D.ravel(), 1e-12)
            good = ok & (err_px < cfg.consistency_px) & (rel < cfg.consistency_rel)
            count += good
            zsum += np.where(good, zb, 0.0)
        keep = valid & (count >= cfg.consistent_views)
        newD = np.where(keep, zsum / (count + 1) if cfg.consistency_average else D.ravel(), 0.0)
        out.append(newD.reshape(H, W).astype(np.float32))
        agree_frac.append((count / max(len(sources[r]), 1)).reshape(H, W).astype(np.float32))
    return out, agree_frac


def _window_std(grey: torch.Tensor, window: int) -> np.ndarray:
    """Grey-level std over each pixel's matching window: where it is tiny, matching is guesswork."""
    m = box(grey[None], window)[0]
    var = (box((grey * grey)[None], window)[0] - m * m).clamp_min(0)
    return torch.sqrt(var).numpy()


def estimate_depths(images: list[np.ndarray], cameras: list[Camera], cfg: DepthConfig | None = None,
                    sparse_points: np.ndarray | None = None,
                    progress: Callable[[int, int], None] | None = None) -> list[DepthResult]:
    """Dense depth for every view, at the working resolution (see DepthResult).

    images: undistorted HxWx3 uint8 RGB, sized as their cameras; sparse_points: optional world points (N, 3)
    from SfM that set each view's depth range and guide source selection; progress(done, total) is called
    after each view's sweep. Raises InputError on mismatched, NaN or too few inputs.
    """
    cfg = cfg or DepthConfig()
    pts = _check_inputs(images, cameras, sparse_points)
    wcams = working_cameras(cameras, cfg.max_side)
    greys = [_grey(np.asarray(im), c) for im, c in zip(images, wcams)]
    ranges = [depth_range(c, pts, wcams, r, cfg) for r, c in enumerate(wcams)]
    sources = select_sources(wcams, cfg, pts, ranges)
    raw, confs, secs = [], [], []
    params = SweepParams(cfg.num_planes, cfg.fine_planes, cfg.fine_range, cfg.window, cfg.best_k,
                         cfg.smooth_radius, cfg.temperature, cfg.plane_chunk)
    with torch_threads(cfg.threads), torch.inference_mode():
        for r, cam in enumerate(wcams):
            t0 = time.perf_counter()
            if not sources[r]:
                raw.append(np.zeros((cam.height, cam.width), np.float32))
                confs.append(np.zeros_like(raw[-1]))
            else:
                near, far = ranges[r]
                d, conf, best = sweep_depth(greys[r], [greys[s] for s in sources[r]], cam,
                                            [wcams[s] for s in sources[r]], near, far, params)
                std = _window_std(greys[r], cfg.window)
                bad = (best > cfg.max_cost) | (conf < cfg.min_confidence) | (std < cfg.min_texture)
                d[bad] = 0.0
                conf[d <= 0] = 0.0
                raw.append(d)
                confs.append(conf)
            secs.append(time.perf_counter() - t0)
            if progress is not None:
                progress(r + 1, len(wcams))
    t0 = time.perf_counter()
    filtered, agree = consistency_filter(raw, wcams, sources, cfg)
    per_view_filter = (time.perf_counter() - t0) / len(wcams)
    results = []
    for r, cam in enumerate(wcams):
        conf = np.where(filtered[r] > 0, confs[r] * np.clip(agree[r] * 2, 0, 1), 0).astype(np.float32)
        results.append(DepthResult(filtered[r], conf, cam, list(sources[r]), secs[r] + per_view_filter))
    return results
