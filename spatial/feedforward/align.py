"""Robust similarity (Sim(3)) between two corresponding 3D point sets, for joining network windows.

Two windows of a long video see their shared frames in two world frames that differ by a rotation, a
translation and a scale (each window's world is its first camera, its scale arbitrary). The shared frames'
confident pixels give many correspondences, a few of them wrong (occlusion edges, sky, a bad depth); so the
fit is a least-median-of-squares seed from minimal samples, then iteratively reweighted least squares with
Huber weights and a hard cut, each step a weighted Umeyama solve.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spatial.evaluation.metrics import umeyama


def weighted_umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
                     with_scale: bool = True) -> np.ndarray:
    """4x4 similarity S (x' = s R x + t) minimising sum w_i ||S src_i - dst_i||^2: the evaluation's Umeyama fit,
    in the argument order this module's callers use."""
    return umeyama(src, dst, with_scale=with_scale, weights=weights)


def transform_points(S: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ S[:3, :3].T + S[:3, 3]


def similarity_scale(S: np.ndarray) -> float:
    return float(np.cbrt(np.linalg.det(S[:3, :3])))


@dataclass
class Sim3Fit:
    """A robust fit: the similarity, which correspondences it keeps, and how well they agree."""

    S: np.ndarray          # 4x4, maps src into dst
    inliers: np.ndarray    # (N,) bool
    rmse: float            # RMS residual of the inliers, in dst units
    sigma: float           # robust residual scale (1.4826 x median residual)

    @property
    def scale(self) -> float:
        return similarity_scale(self.S)


def _residuals(S: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.linalg.norm(transform_points(S, src) - dst, axis=1)


def _lmeds_seed(src, dst, w, samples: int, rng, with_scale: bool) -> np.ndarray:
    """Least median of squares over minimal 3-point samples (tolerates up to half the points being wrong)."""
    best, best_med = weighted_umeyama(src, dst, w, with_scale), np.inf
    n = len(src)
    probe = rng.choice(n, min(n, 2000), replace=False)       # each hypothesis is scored on a fixed subset
    for _ in range(samples):
        idx = rng.choice(n, 3, replace=False)
        a = src[idx] - src[idx].mean(0)
        if np.linalg.matrix_rank(a, tol=1e-9 * max(1.0, np.abs(a).max())) < 2:
            continue
        S = weighted_umeyama(src[idx], dst[idx], with_scale=with_scale)
        if not np.isfinite(S).all():
            continue
        med = float(np.median(_residuals(S, src[probe], dst[probe])))
        if med < best_med:
            best, best_med = S, med
    return best


def robust_sim3(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, iterations: int = 12,
                samples: int = 96, cut: float = 3.0, seed: int = 0, with_scale: bool = True) -> Sim3Fit:
    """Sim(3) from src to dst robust to a minority of wrong correspondences.

    `weights` (N,) >= 0 express prior trust (e.g. network confidence). Each IRLS round sets
    delta = 2 sigma (sigma = 1.4826 x median residual), gives residual r the weight min(1, delta / r)
    (Huber), drops points beyond `cut` x delta, and refits. `with_scale=False` fits a rigid motion.
    """
    src = np.asarray(src, np.float64).reshape(-1, 3)
    dst = np.asarray(dst, np.float64).reshape(-1, 3)
    w0 = np.ones(len(src)) if weights is None else np.clip(np.asarray(weights, np.float64).reshape(-1), 0, None)
    ok = np.isfinite(src).all(1) & np.isfinite(dst).all(1) & (w0 > 0)
    if ok.sum() < 3:
        raise ValueError("robust_sim3 needs at least 3 finite correspondences")
    src, dst, w0 = src[ok], dst[ok], w0[ok]
    rng = np.random.default_rng(seed)
    S = (_lmeds_seed(src, dst, w0, samples, rng, with_scale) if len(src) > 3
         else weighted_umeyama(src, dst, w0, with_scale))
    sigma = 0.0
    for _ in range(iterations):
        r = _residuals(S, src, dst)
        sigma = 1.4826 * float(np.median(r))
        delta = max(2.0 * sigma, 1e-12)
        w = w0 * np.minimum(1.0, delta / np.maximum(r, 1e-300))
        w[r > cut * delta] = 0.0
        if (w > 0).sum() < 3:
            break
        S_new = weighted_umeyama(src, dst, w, with_scale)
        converged = np.abs(S_new - S).max() < 1e-12 * max(1.0, np.abs(S).max())
        S = S_new
        if converged:
            break
    r = _residuals(S, src, dst)
    sigma = 1.4826 * float(np.median(r))
    keep = r <= cut * max(2.0 * sigma, 1e-12)
    inliers = np.zeros(len(ok), bool)
    inliers[np.flatnonzero(ok)[keep]] = True
    rmse = float(np.sqrt(np.mean(r[keep] ** 2))) if keep.any() else float("nan")
    return Sim3Fit(S, inliers, rmse, sigma)
