"""Put a reconstruction in Twin's frame: +Z up on the support plane, and metres from a marker or a distance.

`up_from_plane_and_cameras` finds the dominant support plane (table or floor) by RANSAC among planes
roughly level with the cameras' mean up direction (their -y axis: phones are held upright) and with the
cameras above it, rotates its normal onto +Z by the smallest rotation (heading is kept) and moves the
plane to z = 0. `marker_scale` triangulates the corners of ArUco / AprilTag markers seen in several
views, `distance_scale` uses a measured distance between two camera positions; both give metres per
reconstruction unit, applied with `apply_similarity`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spatial.cameras import Camera
from twin_kit import InputError

DEFAULT_DICTIONARIES = ("DICT_4X4_50", "DICT_5X5_100", "DICT_6X6_250", "DICT_APRILTAG_36h11")


# ---------------------------------------------------------------- up direction and support plane

def camera_up(cameras: Sequence[Camera]) -> np.ndarray:
    """Unit mean of the cameras' up directions (-y of each OpenCV camera, in world coordinates)."""
    if not cameras:
        raise InputError("no cameras to estimate the up direction from")
    u = -np.stack([np.asarray(c.R, np.float64)[1] for c in cameras]).mean(0)
    n = np.linalg.norm(u)
    if n < 1e-6:
        raise InputError("camera up directions cancel out; cannot tell which way is up")
    return u / n


def camera_focus(cameras: Sequence[Camera]) -> np.ndarray | None:
    """Point closest (least squares) to all optical axes: what the capture looks at; None if axes are parallel."""
    C = np.stack([c.center for c in cameras])
    D = np.stack([np.asarray(c.R, np.float64)[2] for c in cameras])
    Pm = np.eye(3)[None] - D[:, :, None] * D[:, None, :]  # projectors orthogonal to each axis
    A, b = Pm.sum(0), np.einsum("nij,nj->i", Pm, C)
    w = np.linalg.eigvalsh(A)
    if w[0] < 1e-3 * len(cameras):
        return None
    return np.linalg.solve(A, b)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation (3x3) taking unit vector a onto unit vector b."""
    a = np.asarray(a, np.float64) / np.linalg.norm(a)
    b = np.asarray(b, np.float64) / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if c < -1.0 + 1e-12:  # opposite: half turn about any axis orthogonal to a
        axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def point_normals(points: np.ndarray, k: int = 16) -> np.ndarray:
    """Unit normal of each point from the PCA of its k nearest neighbours (sign arbitrary)."""
    from scipy.spatial import cKDTree

    pts = np.asarray(points, np.float64)
    if len(pts) < 3:
        return np.zeros_like(pts)
    k = min(k, len(pts))
    idx = cKDTree(pts).query(pts, k=k)[1].reshape(len(pts), k)
    nb = pts[idx] - pts[idx].mean(1, keepdims=True)
    return np.linalg.eigh(np.einsum("nki,nkj->nij", nb, nb))[1][:, :, 0]


def _fit_plane(pts: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane (unit normal n, offset d with n.x + d = 0) through points."""
    mu = pts.mean(0)
    n = np.linalg.svd(pts - mu, full_matrices=False)[2][-1]
    return n, -float(n @ mu)


def ransac_plane(points: np.ndarray, up: np.ndarray, centres: np.ndarray, threshold: float,
                 max_tilt_deg: float = 30.0, focus: np.ndarray | None = None, hypotheses: int = 1000,
                 max_score_points: int = 20000, seed: int = 0, max_normal_deg: float = 20.0
                 ) -> tuple[np.ndarray, float, np.ndarray, float] | None:
    """Plane with most inliers among those tilted < max_tilt_deg from `up` with most cameras (and the
    `focus` point, the object looked at, if given) on its upper side.

    Half the hypotheses are random triplets, half a random point with two of its 64 nearest neighbours,
    which finds planes holding only a few percent of the points. A point counts as an inlier only when
    its own local normal is within `max_normal_deg` of the plane's: otherwise the strips where walls and
    objects cross the plane's height outvote and tilt the real surface. Returns (normal oriented towards
    the cameras, offset, inlier points, inlier fraction of the scored points) or None.
    """
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    P = points if len(points) <= max_score_points else points[rng.choice(len(points), max_score_points, False)]
    if len(P) < 3:
        return None
    N = point_normals(P)
    cos_n = np.cos(np.radians(max_normal_deg))
    tri = P[rng.integers(0, len(P), size=(hypotheses, 3))]
    k = min(64, len(P))
    seeds = rng.integers(0, len(P), size=hypotheses // 2)
    nbrs = cKDTree(P).query(P[seeds], k=k)[1].reshape(len(seeds), k)
    pick = nbrs[np.arange(len(seeds))[:, None], rng.integers(1, k, size=(len(seeds), 2))] if k > 2 else nbrs[:, :2]
    tri[: len(seeds)] = np.concatenate([P[seeds][:, None], P[pick]], axis=1)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    nn = np.linalg.norm(n, axis=1)
    keep = nn > 1e-12
    n, tri = n[keep] / nn[keep, None], tri[keep]
    n *= np.sign(n @ up)[:, None] + (n @ up == 0)[:, None]
    d = -np.einsum("hc,hc->h", n, tri[:, 0])
    above = np.median(centres @ n.T + d, axis=0) > 0
    if focus is not None:
        above &= n @ focus + d > -threshold
    keep = (n @ up > np.cos(np.radians(max_tilt_deg))) & above
    n, d = n[keep], d[keep]
    if not len(n):
        return None
    score = np.zeros(len(n), dtype=np.int64)
    for s in range(0, len(n), 64):  # bounded memory: (points x 64) distances at a time
        near = np.abs(P @ n[s:s + 64].T + d[s:s + 64]) < threshold
        score[s:s + 64] = (near & (np.abs(N @ n[s:s + 64].T) > cos_n)).sum(0)
    best = int(np.argmax(score))
    normal, off = n[best], float(d[best])
    band = threshold
    for it in range(5):  # least-squares refinement; the last passes use a band fitted to the plane's own noise
        fit = (np.abs(P @ normal + off) < band) & (np.abs(N @ normal) > cos_n)
        if fit.sum() < 3:
            break
        normal, off = _fit_plane(P[fit])
        if np.median(centres @ normal + off) < 0:
            normal, off = -normal, -off
        if it >= 1:
            res = np.abs(P[fit] @ normal + off)
            band = float(np.clip(3.0 * 1.4826 * np.median(res), 0.1 * threshold, threshold))
    inl = (np.abs(P @ normal + off) < threshold) & (np.abs(N @ normal) > cos_n)
    return normal, off, P[inl], float(inl.mean())


def robust_extent(points: np.ndarray) -> float:
    """Diagonal of the 2nd..98th percentile bounding box: a scene size that ignores stray points."""
    lo, hi = np.percentile(points, [2, 98], axis=0)
    return float(np.linalg.norm(hi - lo))


def up_from_plane_and_cameras(points: np.ndarray, cameras: Sequence[Camera], rel_threshold: float = 0.01,
                              max_tilt_deg: float = 30.0, min_inlier_fraction: float = 0.02,
                              seed: int = 0) -> tuple[np.ndarray, dict]:
    """Rigid 4x4 transform putting the support plane at z = 0 with +Z up, and that plane's description.

    The RANSAC inlier distance is `rel_threshold` times the robust scene extent (the reconstruction is
    not metric yet). Without a plane holding `min_inlier_fraction` of the points, the cameras' up
    direction is used and the 1st-percentile height of the points around the cameras' focus (within
    half the median camera distance) is put at z = 0 (`found` is False).
    The plane dict (in the aligned frame): normal, offset (n.x + d = 0), found, inlier_fraction,
    tilt_from_camera_up_deg, extent_xy [xmin, ymin, xmax, ymax] and centroid of the inliers (1..99 %).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(1)]
    up = camera_up(cameras)
    centres = np.stack([c.center for c in cameras])
    focus = camera_focus(cameras)
    thr = rel_threshold * robust_extent(pts) if len(pts) >= 3 else 0.0
    fit = ransac_plane(pts, up, centres, thr, max_tilt_deg, focus, seed=seed) if thr > 0 else None
    found = fit is not None and fit[3] >= min_inlier_fraction and len(fit[2]) >= 3
    if found:
        normal, off, inl_pts, frac = fit
    else:
        normal, inl_pts, frac = up, pts[:0], 0.0
        core = pts
        if focus is not None and len(pts):
            near = np.linalg.norm(pts - focus, axis=1) < 0.5 * np.median(np.linalg.norm(centres - focus, axis=1))
            core = pts[near] if near.sum() >= 10 else pts
        off = -float(np.percentile(core @ up, 1)) if len(core) else -float(np.min(centres @ up)) + 1.0
    T = np.eye(4)
    T[:3, :3] = rotation_between(normal, [0.0, 0.0, 1.0])
    T[2, 3] = off  # rotated plane is z = -off
    plane = {"normal": [0.0, 0.0, 1.0], "offset": 0.0, "found": bool(found),
             "inlier_fraction": frac,
             "tilt_from_camera_up_deg": float(np.degrees(np.arccos(np.clip(normal @ up, -1, 1)))),
             "normal_input": normal.tolist(), "offset_input": float(off), "threshold": float(thr)}
    if found:
        q = inl_pts @ T[:3, :3].T + T[:3, 3]
        lo, hi = np.percentile(q[:, :2], [1, 99], axis=0)
        plane["extent_xy"] = [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])]
        plane["centroid"] = q.mean(0).tolist()
    return T, plane


# ---------------------------------------------------------------- scale

@dataclass
class ScaleResult:
    """Metres per reconstruction unit (multiply the world by `scale`) and how it was measured."""

    scale: float
    source: str  # "marker" or "distance"
    rel_std: float = 0.0  # relative spread of the measured lengths (std / mean)
    n_views: int = 0
    n_markers: int = 0
    reprojection_px: float = 0.0  # mean corner reprojection error after triangulation
    markers: list[dict] = field(default_factory=list)  # per marker: dictionary, id, views, side, scale

    @property
    def matrix(self) -> np.ndarray:
        return scale_matrix(self.scale)

    def to_json(self) -> dict:
        return {"scale": self.scale, "source": self.source, "rel_std": self.rel_std, "n_views": self.n_views,
                "n_markers": self.n_markers, "reprojection_px": self.reprojection_px, "markers": self.markers}


def scale_matrix(s: float) -> np.ndarray:
    S = np.eye(4)
    S[:3, :3] *= float(s)
    return S


def apply_similarity(S: np.ndarray, cameras: Sequence[Camera], points: np.ndarray | None = None
                     ) -> tuple[list[Camera], np.ndarray | None]:
    """Cameras and points after the world is mapped by similarity S (4x4, x' = s R x + t)."""
    S = np.asarray(S, dtype=np.float64)
    cams = [c.transformed(S) for c in cameras]
    if points is None:
        return cams, None
    p = np.asarray(points, dtype=np.float64)
    return cams, p @ S[:3, :3].T + S[:3, 3]


def _find_camera(cameras: Sequence[Camera], key: str | int) -> Camera:
    if isinstance(key, (int, np.integer)):
        if not -len(cameras) <= int(key) < len(cameras):
            raise InputError(f"frame index {key} out of range (0..{len(cameras) - 1})")
        return cameras[int(key)]
    for c in cameras:
        if key in (c.name, os.path.basename(c.name), os.path.splitext(os.path.basename(c.name))[0], c.image):
            return c
    raise InputError(f"no frame named {key!r}")


def distance_scale(cameras: Sequence[Camera], frame_a: str | int, frame_b: str | int, metres: float) -> ScaleResult:
    """Scale from the measured distance (metres) between the positions of two frames (names or indices)."""
    if not metres > 0:
        raise InputError(f"distance must be positive, got {metres}")
    a, b = _find_camera(cameras, frame_a), _find_camera(cameras, frame_b)
    d = float(np.linalg.norm(a.center - b.center))
    if d < 1e-9:
        raise InputError(f"frames {a.name} and {b.name} are at the same position; pick two frames apart")
    return ScaleResult(scale=metres / d, source="distance", n_views=2)


def _gray(img) -> np.ndarray:
    import cv2

    if isinstance(img, (str, os.PathLike)):
        g = cv2.imread(os.fspath(img), cv2.IMREAD_GRAYSCALE)
        if g is None:
            raise InputError(f"{img}: cannot read image")
        return g
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    if a.ndim == 3:
        a = cv2.cvtColor(a[..., :3], cv2.COLOR_RGB2GRAY) if a.shape[2] >= 3 else a[..., 0]
    return np.ascontiguousarray(a)


def detect_markers(images: Sequence, dictionaries: Sequence[str] = DEFAULT_DICTIONARIES
                   ) -> tuple[dict[tuple[str, int], list[tuple[int, np.ndarray]]], list[tuple[int, int]]]:
    """{(dictionary, id): [(image index, 4x2 corner pixels), ...]} with sub-pixel corners, and image sizes (h, w).

    A quad found by two dictionaries in the same image is kept for the first one only.
    """
    import cv2

    aruco = cv2.aruco
    params = aruco.DetectorParameters()
    params.cornerRefinementMethod = aruco.CORNER_REFINE_SUBPIX
    detectors = []
    for name in dictionaries:
        if not hasattr(aruco, name):
            raise InputError(f"unknown marker dictionary {name}")
        detectors.append((name, aruco.ArucoDetector(aruco.getPredefinedDictionary(getattr(aruco, name)), params)))
    out: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = {}
    sizes = []
    for k, img in enumerate(images):
        g = _gray(img)
        sizes.append(g.shape[:2])
        seen: list[np.ndarray] = []
        for name, det in detectors:
            corners, ids, _ = det.detectMarkers(g)
            if ids is None:
                continue
            for q, i in zip(corners, ids.ravel()):
                q = np.asarray(q, np.float64).reshape(4, 2)
                c = q.mean(0)
                if any(np.linalg.norm(c - s) < 3.0 for s in seen):
                    continue
                seen.append(c)
                out.setdefault((name, int(i)), []).append((k, q))
    return out, sizes


def _normalised(cam: Camera, px: np.ndarray) -> np.ndarray:
    """Pixel coordinates (N, 2) to undistorted normalised image coordinates (N, 2)."""
    import cv2

    if cam.dist:
        return cv2.undistortPoints(px.reshape(-1, 1, 2), cam.K, np.asarray(cam.dist, np.float64)).reshape(-1, 2)
    return (px - [cam.cx, cam.cy]) / [cam.fx, cam.fy]


def triangulate(P: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation: P (V, 3, 4) projection matrices, xy (..., V, 2) -> points (..., 3)."""
    A = np.concatenate([xy[..., :, 0:1] * P[:, 2] - P[:, 0], xy[..., :, 1:2] * P[:, 2] - P[:, 1]], axis=-2)
    A = A / np.linalg.norm(A, axis=-1, keepdims=True)
    X = np.linalg.svd(A)[2][..., -1, :]
    return X[..., :3] / X[..., 3:4]


def _reprojection(P: np.ndarray, X: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Per (point, view) distance in normalised coordinates; X (C, 3), xy (C, V, 2) -> (C, V)."""
    h = np.einsum("vij,cj->cvi", P, np.concatenate([X, np.ones((len(X), 1))], 1))
    return np.linalg.norm(h[..., :2] / h[..., 2:3] - xy, axis=-1)


def marker_scale(images: Sequence, cameras: Sequence[Camera], marker_size_m: float,
                 dictionaries: Sequence[str] = DEFAULT_DICTIONARIES, max_reprojection_px: float = 2.0,
                 min_angle_deg: float = 2.0) -> ScaleResult | None:
    """Scale from square markers of known side (metres, outer edge of the black square) seen in >= 2 views.

    Each corner is triangulated (DLT on undistorted coordinates) over the views that detect the marker;
    views reprojecting worse than `max_reprojection_px` are dropped and the corners re-triangulated; a
    marker whose rays meet at less than `min_angle_deg` is too poorly conditioned and skipped. The scale
    is the median over markers of marker_size / mean side length. None when no marker qualifies.
    """
    if not marker_size_m > 0:
        raise InputError(f"marker size must be positive, got {marker_size_m}")
    if len(images) != len(cameras):
        raise InputError(f"{len(images)} images for {len(cameras)} cameras")
    obs, sizes = detect_markers(images, dictionaries)
    markers, sides_all, reproj, views_used = [], [], [], set()
    for (dname, mid), seen in sorted(obs.items()):
        if len(seen) < 2:
            continue
        cams, xy = [], []
        for k, q in seen:
            cam = cameras[k]
            h, w = sizes[k]
            if (w, h) != (cam.width, cam.height):
                cam = cam.scaled(w / cam.width)
            cams.append(cam)
            xy.append(_normalised(cam, q))
        P = np.stack([np.hstack([c.R, c.t[:, None]]) for c in cams])
        xy = np.stack(xy, axis=1)  # (4 corners, V, 2)
        f = np.array([(c.fx + c.fy) / 2 for c in cams])
        keep = np.ones(len(cams), dtype=bool)
        for _ in range(3):  # drop views that disagree, re-triangulate
            X = triangulate(P[keep], xy[:, keep])
            new = (_reprojection(P, X, xy) * f).max(0) <= max_reprojection_px
            if new.sum() < 2 or (new == keep).all():
                break
            keep = new
        if keep.sum() < 2:
            continue
        X = triangulate(P[keep], xy[:, keep])
        err = _reprojection(P[keep], X, xy[:, keep]) * f[keep]
        if err.max() > max_reprojection_px:
            continue
        centres = np.stack([c.center for c, k in zip(cams, keep) if k])
        rays = X.mean(0) - centres
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        angle = float(np.degrees(np.arccos(np.clip((rays @ rays.T).min(), -1, 1))))
        if angle < min_angle_deg:
            continue
        sides = np.linalg.norm(X - np.roll(X, -1, axis=0), axis=1)
        side = float(sides.mean())
        markers.append({"dictionary": dname, "id": mid, "views": int(keep.sum()), "side": side,
                        "scale": marker_size_m / side, "reprojection_px": float(err.mean()),
                        "max_angle_deg": angle})
        sides_all.append(sides / side)
        reproj.append(float(err.mean()))
        views_used.update(k for (k, _), kk in zip(seen, keep) if kk)
    if not markers:
        return None
    scales = np.array([m["scale"] for m in markers])
    rel = np.concatenate(sides_all)  # each marker's sides relative to its own mean
    spread = np.concatenate([rel, scales / np.median(scales)]) if len(markers) > 1 else rel
    return ScaleResult(scale=float(np.median(scales)), source="marker", rel_std=float(np.std(spread)),
                       n_views=len(views_used), n_markers=len(markers), reprojection_px=float(np.mean(reproj)),
                       markers=markers)
